from __future__ import annotations

import asyncio
from urllib.parse import parse_qs, urlsplit

import pytest

from ivr_auth import ari
from ivr_auth.ari import events

# --- channel_ids ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "event_type", ["StasisStart", "StasisEnd", "ChannelDtmfReceived", "ChannelStateChange", "ChannelDestroyed"]
)
def test_channel_event_names_its_channel(event_type: str) -> None:
    event: ari.Event = {"type": event_type, "channel": {"id": "chan-1", "state": "Up"}}

    assert events.channel_ids(event) == ["chan-1"]


@pytest.mark.parametrize("event_type", ["PlaybackStarted", "PlaybackFinished"])
def test_playback_event_names_its_target_channel(event_type: str) -> None:
    event: ari.Event = {
        "type": event_type,
        "playback": {"id": "pb-1", "target_uri": "channel:chan-2", "state": "done"},
    }

    assert events.channel_ids(event) == ["chan-2"]


def test_recording_event_names_its_target_channel() -> None:
    event: ari.Event = {"type": "RecordingFinished", "recording": {"name": "r", "target_uri": "channel:chan-3"}}

    assert events.channel_ids(event) == ["chan-3"]


@pytest.mark.parametrize(
    "event",
    [
        {"type": "ApplicationReplaced", "application": "ivr-auth"},
        {"type": "PlaybackFinished", "playback": {"id": "pb", "target_uri": "bridge:br-1"}},
        {"type": "PlaybackFinished", "playback": {"id": "pb"}},
        {"type": "PlaybackFinished", "playback": "channel:chan-1"},
        {"type": "PlaybackFinished", "playback": {"target_uri": 5}},
        {"type": "StasisStart", "channel": {"name": "PJSIP/x"}},
        {"type": "StasisStart", "channel": {"id": 42}},
        {"type": "StasisStart", "channel": "chan-1"},
        {"type": "StasisStart", "channel": None},
        {},
    ],
)
def test_events_without_a_channel(event: ari.Event) -> None:
    assert events.channel_ids(event) == []


def test_event_with_channel_and_playback_names_both() -> None:
    event: ari.Event = {"channel": {"id": "a"}, "playback": {"target_uri": "channel:b"}}

    assert events.channel_ids(event) == ["a", "b"]


# --- events_url ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ("http://127.0.0.1:8088/ari", "ws://127.0.0.1:8088/ari/events"),
        ("http://127.0.0.1:8088/ari/", "ws://127.0.0.1:8088/ari/events"),
        ("https://pbx.example/ari", "wss://pbx.example/ari/events"),
    ],
)
def test_events_url_scheme_and_path(base: str, expected: str) -> None:
    url = events.events_url(base, "ivr-auth")

    assert url.split("?", 1)[0] == expected
    assert parse_qs(urlsplit(url).query) == {"app": ["ivr-auth"], "subscribeAll": ["false"]}


def test_events_url_quotes_the_app_name() -> None:
    url = events.events_url("http://h/ari", "a b&subscribeAll=true")

    query = urlsplit(url).query
    assert "&subscribeAll=true" not in query
    assert parse_qs(query) == {"app": ["a b&subscribeAll=true"], "subscribeAll": ["false"]}


# --- Dispatcher ----------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.events: list[ari.Event] = []

    async def __call__(self, event: ari.Event) -> None:
        self.events.append(event)


def drain(queue: asyncio.Queue[ari.Event]) -> list[ari.Event]:
    out = []
    while not queue.empty():
        out.append(queue.get_nowait())
    return out


async def test_subscribed_channel_gets_its_events_in_order() -> None:
    fallback = Recorder()
    dispatcher = events.Dispatcher(fallback)
    queue = dispatcher.subscribe("chan-1")
    dtmf: ari.Event = {"type": "ChannelDtmfReceived", "digit": "1", "channel": {"id": "chan-1"}}
    finished: ari.Event = {"type": "PlaybackFinished", "playback": {"target_uri": "channel:chan-1"}}

    await dispatcher(dtmf)
    await dispatcher(finished)

    assert drain(queue) == [dtmf, finished]
    assert fallback.events == []


async def test_other_channels_and_channelless_events_go_to_the_fallback() -> None:
    fallback = Recorder()
    dispatcher = events.Dispatcher(fallback)
    queue = dispatcher.subscribe("chan-1")
    other: ari.Event = {"type": "StasisStart", "channel": {"id": "chan-2"}}
    global_event: ari.Event = {"type": "ApplicationReplaced"}

    await dispatcher(other)
    await dispatcher(global_event)

    assert fallback.events == [other, global_event]
    assert queue.empty()


async def test_event_for_two_subscribed_channels_reaches_both() -> None:
    fallback = Recorder()
    dispatcher = events.Dispatcher(fallback)
    a = dispatcher.subscribe("a")
    b = dispatcher.subscribe("b")
    event: ari.Event = {"channel": {"id": "a"}, "playback": {"target_uri": "channel:b"}}

    await dispatcher(event)

    assert drain(a) == [event]
    assert drain(b) == [event]
    assert fallback.events == []


async def test_unsubscribe_stops_routing() -> None:
    fallback = Recorder()
    dispatcher = events.Dispatcher(fallback)
    queue = dispatcher.subscribe("chan-1")
    event: ari.Event = {"type": "ChannelDestroyed", "channel": {"id": "chan-1"}}

    dispatcher.unsubscribe("chan-1")
    await dispatcher(event)

    assert "chan-1" not in dispatcher
    assert queue.empty()
    assert fallback.events == [event]


async def test_unsubscribe_of_an_unknown_channel_is_harmless() -> None:
    dispatcher = events.Dispatcher()

    dispatcher.unsubscribe("never")

    assert "never" not in dispatcher


async def test_without_a_fallback_unrouted_events_are_dropped() -> None:
    dispatcher = events.Dispatcher()
    queue = dispatcher.subscribe("chan-1")

    await dispatcher({"type": "StasisStart", "channel": {"id": "chan-2"}})

    assert queue.empty()


async def test_subscribe_again_replaces_the_queue() -> None:
    dispatcher = events.Dispatcher()
    old = dispatcher.subscribe("chan-1")
    new = dispatcher.subscribe("chan-1")
    event: ari.Event = {"channel": {"id": "chan-1"}}

    await dispatcher(event)

    assert "chan-1" in dispatcher
    assert old.empty()
    assert drain(new) == [event]


async def test_channels_lists_the_subscribed_ones() -> None:
    dispatcher = events.Dispatcher()
    dispatcher.subscribe("chan-1")
    dispatcher.subscribe("chan-2")
    dispatcher.unsubscribe("chan-1")

    assert dispatcher.channels() == ["chan-2"]


async def test_fallback_can_be_set_after_construction() -> None:
    # The controller installs its handler for calls that start in the dialplan.
    dispatcher = events.Dispatcher()
    fallback = Recorder()
    dispatcher.fallback = fallback
    event: ari.Event = {"type": "StasisStart", "application": "inbound", "channel": {"id": "in-1"}}

    await dispatcher(event)

    assert fallback.events == [event]
