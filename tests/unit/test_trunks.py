"""Trunk choice: priorities, turns, per-trunk pacing and failover, on an injected clock."""

from __future__ import annotations

import pytest

from ivr_auth import causes, config, trunks


def trunk(name: str, priority: int = 0, *, cps: float = 100.0, channels: int = 10) -> config.TrunkConfig:
    return config.TrunkConfig(name=name, priority=priority, calls_per_second=cps, max_channels=channels)


def picks(pool: trunks.Trunks, now: float, count: int) -> list[str | None]:
    out = []
    for _ in range(count):
        chosen = pool.acquire(now)
        out.append(chosen.name if chosen else None)
    return out


def test_the_lowest_priority_number_goes_first() -> None:
    pool = trunks.Trunks([trunk("backup", 2), trunk("primary", 1)], retry_seconds=30)

    assert picks(pool, 0.0, 3) == ["primary"] * 3


def test_trunks_of_one_priority_take_turns() -> None:
    pool = trunks.Trunks([trunk("a", 1), trunk("b", 1), trunk("c", 1), trunk("z", 2)], retry_seconds=30)

    assert picks(pool, 0.0, 7) == ["a", "b", "c", "a", "b", "c", "a"]


def test_a_trunk_out_of_channels_overflows_to_the_next_priority() -> None:
    pool = trunks.Trunks([trunk("primary", 1, channels=2), trunk("backup", 2, channels=1)], retry_seconds=30)

    assert picks(pool, 0.0, 4) == ["primary", "primary", "backup", None]
    assert pool.capacity(0.0) == 0
    assert pool.wait_time(0.0) is None  # only a call's end frees a channel

    pool.release("primary")

    assert pool.capacity(0.0) == 1
    assert picks(pool, 0.0, 1) == ["primary"]


def test_calls_per_second_is_per_trunk() -> None:
    pool = trunks.Trunks([trunk("slow", 1, cps=1), trunk("fast", 2, cps=2)], retry_seconds=30)

    assert pool.capacity(0.0) == 2
    assert picks(pool, 0.0, 3) == ["slow", "fast", None]
    assert pool.wait_time(0.0) == pytest.approx(0.5)
    assert picks(pool, 0.5, 2) == ["fast", None]
    assert picks(pool, 1.0, 3) == ["slow", "fast", None]


@pytest.mark.parametrize("cps", [1.0, 2.0, 5.0, 10.0, 30.0, 200.0])
def test_no_second_sees_more_than_calls_per_second_after_a_quiet_spell(cps: float) -> None:
    """Carriers count new calls by the second: a bucket a second deep would
    let twice the rate through in the first second after a pause."""
    pool = trunks.Trunks([trunk("only", cps=cps, channels=100_000)], retry_seconds=30)
    starts: list[float] = []
    now = 100.0  # long idle: the bucket is as full as it gets
    while now < 103.0:
        while pool.acquire(now) is not None:
            starts.append(now)
        now += 0.001
    worst = max(sum(1 for t in starts if s <= t < s + 1.0) for s in starts)
    assert worst <= cps * 1.05 + 1e-9


def test_offers_rank_priorities_and_take_turns_within_one() -> None:
    pool = trunks.Trunks(
        [trunk("a", 1, cps=5, channels=2), trunk("b", 1, cps=5, channels=2), trunk("z", 2)], retry_seconds=30
    )

    assert [(o.name, o.rank, o.room) for o in pool.offers(0.0)] == [("a", 1, 1), ("b", 1, 1), ("z", 2, 5)]
    first = pool.offers(0.0)[0]
    assert (first.rate, first.burst, first.max_channels) == (5.0, 1.0, 2)

    # The claim gave the call to a: b has the next turn, and a has spent its token.
    assert pool.take("a", 0.0).name == "a"
    assert [o.name for o in pool.offers(0.0)] == ["b", "z"]
    assert [o.name for o in pool.offers(0.2)] == ["b", "a", "z"]


def test_offers_when_every_trunk_is_down_go_by_the_cooldown_ending_first() -> None:
    pool = trunks.Trunks([trunk("primary", 1), trunk("backup", 2)], retry_seconds=30)
    pool.failed("backup", 0.0)
    pool.failed("primary", 5.0)

    assert [(o.name, o.rank) for o in pool.offers(6.0)] == [("backup", 0), ("primary", 1)]


def test_take_never_owes_tokens_granted_by_the_shared_bucket() -> None:
    pool = trunks.Trunks([trunk("only", cps=1)], retry_seconds=30)
    pool.take("only", 0.0)
    pool.take("only", 0.0)  # granted elsewhere: this controller's bucket just stays empty

    assert pool["only"].channels == 2
    assert pool.wait_time(0.0) == pytest.approx(1.0)


def test_a_trunk_marked_down_elsewhere_is_skipped_here_too() -> None:
    pool = trunks.Trunks([trunk("primary", 1), trunk("backup", 2)], retry_seconds=30)
    pool.down_for("primary", 10.0, 20.0)
    pool.down_for("primary", 10.0, 5.0)  # a shorter mark does not shorten it
    pool.down_for("unknown", 10.0, 5.0)  # another node's trunk: nothing here

    assert pool.down(29.0) == ["primary"]
    assert [o.name for o in pool.offers(29.0)] == ["backup"]
    assert pool.down(30.0) == []


def test_a_failed_trunk_is_skipped_then_retried_after_the_cooldown() -> None:
    pool = trunks.Trunks([trunk("primary", 1), trunk("backup", 2)], retry_seconds=30)
    assert picks(pool, 0.0, 1) == ["primary"]

    pool.failed("primary", 1.0)

    assert pool.down(1.0) == ["primary"]
    assert pool.other_up("primary", 1.0)
    assert picks(pool, 1.0, 2) == ["backup", "backup"]
    assert picks(pool, 30.9, 1) == ["backup"]
    assert pool.down(31.0) == []
    assert picks(pool, 31.0, 1) == ["primary"]


def test_a_down_trunk_does_not_count_as_capacity_while_another_is_up() -> None:
    pool = trunks.Trunks([trunk("primary", 1, cps=5), trunk("backup", 2, cps=1)], retry_seconds=30)
    pool.failed("primary", 0.0)

    assert pool.capacity(0.0) == 1
    assert picks(pool, 0.0, 2) == ["backup", None]
    # The backup's next token (1 s) comes before the primary's cooldown ends.
    assert pool.wait_time(0.0) == pytest.approx(1.0)


def test_when_every_trunk_is_down_the_first_to_recover_is_used() -> None:
    pool = trunks.Trunks([trunk("primary", 1), trunk("backup", 2)], retry_seconds=30)
    pool.failed("backup", 0.0)
    pool.failed("primary", 5.0)

    assert not pool.other_up("primary", 6.0)
    assert pool.capacity(6.0) > 0
    assert picks(pool, 6.0, 2) == ["backup", "backup"]


def test_until_up_is_zero_while_a_trunk_is_up() -> None:
    pool = trunks.Trunks([trunk("primary", 1), trunk("backup", 2)], retry_seconds=30)
    assert pool.until_up(0.0) == 0.0

    pool.failed("primary", 1.0)

    # The request can fail over to the backup at once.
    assert pool.until_up(1.0) == 0.0


def test_until_up_with_every_trunk_down_is_the_first_cooldown_to_end() -> None:
    pool = trunks.Trunks([trunk("primary", 1), trunk("backup", 2)], retry_seconds=30)
    pool.failed("backup", 0.0)
    pool.failed("primary", 5.0)

    assert pool.until_up(6.0) == pytest.approx(24.0)  # the backup's, at 30 s
    assert pool.until_up(30.0) == 0.0


def test_a_lone_trunk_that_failed_is_up_again_after_its_cooldown() -> None:
    pool = trunks.Trunks([trunk("only")], retry_seconds=20)

    pool.failed("only", 3.0)

    assert pool.until_up(3.0) == pytest.approx(20.0)
    assert pool.until_up(13.0) == pytest.approx(10.0)
    assert pool.until_up(23.0) == 0.0
    assert pool.until_up(99.0) == 0.0


def test_the_wait_counts_a_cooldown_ending() -> None:
    pool = trunks.Trunks([trunk("primary", 1, cps=100), trunk("backup", 2, cps=1, channels=1)], retry_seconds=10)
    pool.failed("primary", 0.0)
    assert picks(pool, 0.0, 2) == ["backup", None]

    assert pool.wait_time(0.0) == pytest.approx(10.0)  # the backup is full; the primary is back at 10 s


def test_release_never_goes_below_zero() -> None:
    pool = trunks.Trunks([trunk("a", cps=1000)], retry_seconds=1)

    pool.release("a")

    assert pool["a"].channels == 0
    assert pool.capacity(0.0) == 10


def test_from_config_without_trunks_uses_the_single_trunk() -> None:
    cfg = config.from_mapping({"trunk": {"name": "carrier", "calls_per_second": 2}})

    pool = trunks.Trunks.from_config(cfg)

    assert pool.names == ["carrier"]
    assert pool.capacity(0.0) == 1  # a bucket one call deep at 2 a second
    assert pool.retry_seconds == 30.0


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one trunk"):
        trunks.Trunks([], retry_seconds=1)
    with pytest.raises(ValueError, match="retry_seconds"):
        trunks.Trunks([trunk("a")], retry_seconds=0)


@pytest.mark.parametrize(("cause", "failed"), [(34, True), (38, True), (41, True), (42, True), (102, True)])
def test_trunk_failure_causes(cause: int, failed: bool) -> None:
    assert causes.trunk_failure(cause) is failed


@pytest.mark.parametrize("cause", [0, 1, 16, 17, 18, 19, 20, 21])
def test_causes_about_the_callee_are_not_trunk_failures(cause: int) -> None:
    assert not causes.trunk_failure(cause)
