from __future__ import annotations

import pytest

from ivr_auth import digit_collector


def collector(
    max_digits: int = 4, *, terminator: str | None = "#", clear_key: str | None = "*"
) -> digit_collector.DigitCollector:
    """Started at 100.0; 10 s for the first key, 5 s between keys."""
    return digit_collector.DigitCollector(
        max_digits,
        started_at=100.0,
        first_digit_timeout=10.0,
        inter_digit_timeout=5.0,
        terminator=terminator,
        clear_key=clear_key,
    )


def feed_all(c: digit_collector.DigitCollector, keys: str, start: float = 101.0, step: float = 1.0) -> list[bool]:
    return [c.feed(key, start + i * step) for i, key in enumerate(keys)]


def test_max_digits_ends_entry() -> None:
    c = collector(4)

    assert feed_all(c, "1234") == [False, False, False, True]
    assert c.done
    assert c.ended is digit_collector.Ended.MAX_DIGITS
    assert c.value == "1234"


def test_terminator_ends_entry_early_and_is_not_a_digit() -> None:
    c = collector(6)

    assert feed_all(c, "12#") == [False, False, True]
    assert c.ended is digit_collector.Ended.TERMINATOR
    assert c.value == "12"


def test_terminator_alone_gives_an_empty_value() -> None:
    c = collector()

    assert c.feed("#", 101.0)
    assert c.ended is digit_collector.Ended.TERMINATOR
    assert c.value == ""


def test_clear_key_starts_entry_again() -> None:
    c = collector(4)

    feed_all(c, "12*34")

    assert not c.done
    assert c.value == "34"
    assert feed_all(c, "56", start=106.0) == [False, True]
    assert c.value == "3456"


def test_letters_are_accepted_and_ignored() -> None:
    c = collector(2)

    assert feed_all(c, "1ABCD") == [False] * 5
    assert c.value == "1"


def test_other_terminator_and_clear_key() -> None:
    c = collector(6, terminator="*", clear_key="#")

    feed_all(c, "12#3")
    assert c.value == "3"
    assert c.feed("*", 105.0)
    assert c.ended is digit_collector.Ended.TERMINATOR
    assert c.value == "3"


def test_without_terminator_or_clear_key_they_are_ignored() -> None:
    c = collector(3, terminator=None, clear_key=None)

    assert feed_all(c, "1#*2") == [False] * 4
    assert c.value == "12"


@pytest.mark.parametrize("key", ["x", "", "11", "e", "a", " ", "+"])
def test_invalid_key_raises(key: str) -> None:
    c = collector()

    with pytest.raises(ValueError, match="not a DTMF key"):
        c.feed(key, 101.0)
    assert not c.done
    assert c.last_key_at is None


@pytest.mark.parametrize("max_digits", [0, -1])
def test_max_digits_below_one_is_refused(max_digits: int) -> None:
    with pytest.raises(ValueError, match="max_digits"):
        digit_collector.DigitCollector(max_digits, started_at=0.0)


def test_terminator_equal_to_clear_key_is_refused() -> None:
    with pytest.raises(ValueError, match="differ"):
        digit_collector.DigitCollector(4, started_at=0.0, terminator="#", clear_key="#")


def test_no_terminator_and_no_clear_key_is_allowed() -> None:
    assert not digit_collector.DigitCollector(4, 0.0, terminator=None, clear_key=None).done


# --- time ----------------------------------------------------------------------------


def test_first_digit_deadline_then_inter_digit_deadline() -> None:
    c = collector()

    assert c.deadline() == 110.0
    c.feed("1", 108.0)
    assert c.deadline() == 113.0
    c.feed("*", 112.0)
    assert c.deadline() == 117.0


def test_tick_before_the_deadline_does_nothing() -> None:
    c = collector()

    assert not c.tick(109.99)
    assert not c.done


def test_tick_at_the_first_digit_deadline_times_out() -> None:
    c = collector()

    assert c.tick(110.0)
    assert c.ended is digit_collector.Ended.TIMEOUT


def test_inter_digit_timeout_is_shorter_than_the_first() -> None:
    c = collector()
    c.feed("1", 101.0)

    assert not c.tick(105.9)
    assert c.tick(106.0)
    assert c.ended is digit_collector.Ended.TIMEOUT
    assert c.value == "1"


def test_key_that_arrives_past_the_deadline_still_counts() -> None:
    # Timeouts are tick()'s; a key that did arrive (during a long prompt, or
    # just at the edge) is the caller's.
    c = collector()
    c.feed("1", 101.0)

    assert not c.feed("2", 106.5)
    assert c.ended is None
    assert c.value == "12"
    assert c.last_key_at == 106.5


def test_restart_moves_the_first_digit_clock() -> None:
    c = collector()

    c.restart(130.0)

    assert c.deadline() == 140.0
    assert not c.tick(139.0)
    assert not c.feed("1", 139.0)


def test_restart_after_the_first_key_is_ignored() -> None:
    c = collector()
    c.feed("1", 101.0)

    c.restart(200.0)

    assert c.started_at == 100.0
    assert c.deadline() == 106.0


def test_restart_after_the_end_is_ignored() -> None:
    c = collector()
    c.tick(110.0)

    c.restart(200.0)

    assert c.started_at == 100.0
    assert c.ended is digit_collector.Ended.TIMEOUT


# --- after the end -------------------------------------------------------------------


def test_feeding_after_done_changes_nothing() -> None:
    c = collector(2)
    feed_all(c, "12")

    assert c.feed("3", 104.0)
    assert c.feed("*", 104.0)
    assert c.feed("not even a key", 104.0)
    assert c.value == "12"
    assert c.ended is digit_collector.Ended.MAX_DIGITS
    assert c.tick(1000.0)
    assert c.ended is digit_collector.Ended.MAX_DIGITS


def test_hangup_ends_entry_and_keeps_the_digits() -> None:
    c = collector()
    c.feed("7", 101.0)

    c.hangup()

    assert c.done
    assert c.ended is digit_collector.Ended.HANGUP
    assert c.value == "7"
    assert c.feed("8", 102.0)
    assert c.value == "7"


def test_hangup_after_the_end_keeps_the_first_reason() -> None:
    c = collector()
    c.feed("#", 101.0)

    c.hangup()

    assert c.ended is digit_collector.Ended.TERMINATOR
