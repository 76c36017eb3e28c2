from __future__ import annotations

import pytest

from ivr_auth import pacing


def emptied(rate: float, burst: float, at: float = 100.0) -> pacing.TokenBucket:
    bucket = pacing.TokenBucket(rate=rate, burst=burst)
    bucket.take(at, bucket.available(at))
    return bucket


def test_a_new_bucket_holds_its_burst() -> None:
    bucket = pacing.TokenBucket(rate=1.0, burst=5)

    assert bucket.available(100.0) == 5
    assert bucket.wait_time(100.0) == 0.0


def test_burst_calls_go_at_once_then_the_bucket_is_empty() -> None:
    bucket = pacing.TokenBucket(rate=1.0, burst=3)

    for _ in range(3):
        bucket.take(100.0)

    assert bucket.available(100.0) == 0
    with pytest.raises(ValueError, match="not enough tokens"):
        bucket.take(100.0)


def test_refills_at_rate() -> None:
    bucket = emptied(rate=2.0, burst=4)

    assert bucket.available(100.25) == 0
    assert bucket.available(100.5) == 1
    assert bucket.available(101.0) == 2
    assert bucket.available(101.5) == 3


def test_never_holds_more_than_burst() -> None:
    bucket = emptied(rate=10.0, burst=3)

    assert bucket.available(1_000_000.0) == 3
    bucket.take(1_000_000.0, 3)
    assert bucket.available(1_000_000.0) == 0


def test_a_clock_going_backwards_adds_nothing() -> None:
    bucket = emptied(rate=1.0, burst=2, at=100.0)

    assert bucket.available(50.0) == 0
    assert bucket.available(101.0) == 1


def test_take_beyond_the_tokens_raises_and_takes_nothing() -> None:
    bucket = pacing.TokenBucket(rate=1.0, burst=3)
    bucket.take(100.0, 2)

    with pytest.raises(ValueError, match="not enough tokens"):
        bucket.take(100.0, 2)

    assert bucket.available(100.0) == 1
    bucket.take(100.0)


def test_take_more_than_burst_always_raises() -> None:
    bucket = pacing.TokenBucket(rate=1.0, burst=2)

    with pytest.raises(ValueError, match="not enough tokens"):
        bucket.take(1_000.0, 3)


def test_wait_time_is_the_time_to_the_next_token() -> None:
    bucket = emptied(rate=2.0, burst=2)

    assert bucket.wait_time(100.0) == pytest.approx(0.5)
    assert bucket.wait_time(100.2) == pytest.approx(0.3)
    assert bucket.wait_time(100.5) == 0.0


def test_after_waiting_wait_time_a_take_succeeds() -> None:
    bucket = emptied(rate=3.0, burst=1, at=7.0)
    now = 7.0
    for _ in range(10):
        now += bucket.wait_time(now)
        bucket.take(now)

    assert now == pytest.approx(7.0 + 10 / 3)


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1.0), (-1.0, 1.0), (1.0, 0.5), (1.0, 0.0)])
def test_nonsense_rate_or_burst_is_refused(rate: float, burst: float) -> None:
    with pytest.raises(ValueError, match="rate must be positive"):
        pacing.TokenBucket(rate=rate, burst=burst)
