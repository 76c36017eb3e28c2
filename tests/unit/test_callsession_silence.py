"""CallSession keeps RTP flowing while it waits for keys: the ARI requests it
makes, in order, against a recording fake of the REST client."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import pytest

from ivr_auth import callsession, errors, types
from ivr_auth.ari import events
from ivr_auth.ari import node as ari_node

CHANNEL = "ivrauth-abc-1"
ONE_KEY = callsession.CollectOptions(max_digits=1, first_digit_timeout=1.0, terminator=None, clear_key=None)


class FakeClient:
    def __init__(self, silence_error: errors.AriError | None = None) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.silence_error = silence_error

    async def play(self, channel_id: str, media: list[str], *, playback_id: str, lang: str = "") -> dict[str, Any]:
        self.calls.append(("play", channel_id, playback_id))
        return {"id": playback_id}

    async def start_silence(self, channel_id: str) -> None:
        self.calls.append(("silence", channel_id))
        if self.silence_error is not None:
            raise self.silence_error

    async def stop_playback(self, playback_id: str) -> bool:
        self.calls.append(("stop", playback_id))
        return True


class FakeNode:
    def __init__(self, client: FakeClient) -> None:
        self.client = client
        self.dispatcher = events.Dispatcher()
        self.app = "ivr-auth-test"

    async def send(self, event: types.AriEvent) -> None:
        await self.dispatcher(event)


def session_for(client: FakeClient) -> tuple[callsession.CallSession, FakeNode]:
    node = FakeNode(client)
    return callsession.CallSession(cast(ari_node.AriNode, node), CHANNEL), node


def key(digit: str) -> types.AriEvent:
    return {"type": "ChannelDtmfReceived", "channel": {"id": CHANNEL}, "digit": digit}


def finished(playback_id: str) -> types.AriEvent:
    return {"type": "PlaybackFinished", "playback": {"id": playback_id, "target_uri": f"channel:{CHANNEL}"}}


async def test_silence_is_queued_behind_the_prompt_before_the_wait() -> None:
    client = FakeClient()
    session, node = session_for(client)
    collecting = asyncio.create_task(session.collect(["sound:x"], ONE_KEY, lang="en"))
    await asyncio.sleep(0)
    # Asked for at once, while the prompt plays: Asterisk starts it when the prompt ends.
    assert client.calls == [("play", CHANNEL, f"{CHANNEL}-p1"), ("silence", CHANNEL)]
    await node.send(finished(f"{CHANNEL}-p1"))
    await node.send(key("1"))
    entry = await collecting
    assert entry.value == "1"
    assert client.calls == [("play", CHANNEL, f"{CHANNEL}-p1"), ("silence", CHANNEL)]


async def test_a_key_that_stops_the_prompt_asks_for_nothing_more() -> None:
    client = FakeClient()
    session, node = session_for(client)
    collecting = asyncio.create_task(session.collect(["sound:x"], ONE_KEY, lang="en"))
    await asyncio.sleep(0)
    await node.send(key("1"))
    assert (await collecting).value == "1"
    # The silence already queued starts when the stopped prompt ends.
    assert client.calls == [("play", CHANNEL, f"{CHANNEL}-p1"), ("silence", CHANNEL), ("stop", f"{CHANNEL}-p1")]


async def test_a_wait_without_a_prompt_starts_silence_at_once() -> None:
    client = FakeClient()
    session, node = session_for(client)
    collecting = asyncio.create_task(session.collect([], ONE_KEY, lang="en"))
    await asyncio.sleep(0)
    assert client.calls == [("silence", CHANNEL)]
    await node.send(key("5"))
    assert (await collecting).value == "5"


async def test_a_prompt_nobody_waits_after_gets_no_silence() -> None:
    client = FakeClient()
    session, node = session_for(client)
    playing = asyncio.create_task(session.play(["sound:x"], lang="en"))
    await asyncio.sleep(0)
    await node.send(finished(f"{CHANNEL}-p1"))
    await playing
    assert client.calls == [("play", CHANNEL, f"{CHANNEL}-p1")]


@pytest.mark.parametrize(
    ("error", "level"),
    [
        (errors.AriError("ARI POST channels/c/silence: HTTP 404 Channel not found", status=404), logging.DEBUG),
        (errors.AriError("ARI POST channels/c/silence: HTTP 409 Channel not in Stasis", status=409), logging.WARNING),
        (errors.AriUnavailable("ARI POST channels/c/silence: no answer within 10s"), logging.WARNING),
    ],
)
async def test_a_failed_silence_request_never_breaks_the_call(
    error: errors.AriError, level: int, caplog: pytest.LogCaptureFixture
) -> None:
    client = FakeClient(silence_error=error)
    session, node = session_for(client)
    caplog.set_level(logging.DEBUG, logger="ivr_auth.callsession")
    collecting = asyncio.create_task(session.collect(["sound:x"], ONE_KEY, lang="en"))
    await asyncio.sleep(0)
    await node.send(key("1"))
    assert (await collecting).value == "1"
    (record,) = [r for r in caplog.records if "silence" in r.getMessage()]
    assert record.levelno == level
    assert getattr(record, "channel_id", None) == CHANNEL
