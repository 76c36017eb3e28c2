"""CallSession keeps RTP flowing while it waits for keys and while AMD()
listens: the ARI requests it makes, in order, against a recording fake of
the REST client."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import pytest

from ivr_auth import ari, callsession, errors
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

    async def request(self, method: str, path: str, *, params: dict[str, str] | None = None) -> None:
        self.calls.append((method, path, *(f"{k}={v}" for k, v in (params or {}).items())))

    async def hangup(self, channel_id: str, reason: str = "normal") -> bool:
        self.calls.append(("hangup", channel_id))
        return True


class FakeNode:
    def __init__(self, client: FakeClient) -> None:
        self.client = client
        self.dispatcher = events.Dispatcher()
        self.app = "ivr-auth-test"

    async def send(self, event: ari.Event) -> None:
        await self.dispatcher(event)


def session_for(client: FakeClient) -> tuple[callsession.CallSession, FakeNode]:
    node = FakeNode(client)
    return callsession.CallSession(cast(ari_node.AriNode, node), CHANNEL), node


def key(digit: str) -> ari.Event:
    return {"type": "ChannelDtmfReceived", "channel": {"id": CHANNEL}, "digit": digit}


def finished(playback_id: str) -> ari.Event:
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


# --- answering-machine detection on a snoop ------------------------------------------------

SNOOP = f"{CHANNEL}-amd"
SNOOP_CALLS: list[tuple[str, ...]] = [
    ("silence", CHANNEL),
    ("POST", f"channels/{CHANNEL}/snoop", "spy=in", "app=ivr-auth-test", f"snoopId={SNOOP}"),
]
TO_AMD: list[tuple[str, ...]] = [
    ("POST", f"channels/{SNOOP}/variable", "variable=IVRAUTH_APP", "value=ivr-auth-test"),
    ("POST", f"channels/{SNOOP}/continue", "context=ivr-auth-amd", "extension=s", "priority=1"),
]


def snoop_event(kind: str, *args: str) -> ari.Event:
    return {"type": kind, "channel": {"id": SNOOP}, "args": list(args)}


async def test_amd_runs_on_a_snoop_while_the_call_hears_silence() -> None:
    client = FakeClient()
    session, node = session_for(client)
    detecting = asyncio.create_task(session.detect_machine("ivr-auth-amd", 5.0))
    await asyncio.sleep(0.01)
    # Silence first, then the snoop; the snoop goes to AMD() once it is in Stasis.
    assert client.calls == SNOOP_CALLS
    await node.send(snoop_event("StasisStart"))
    await asyncio.sleep(0.01)
    assert client.calls == SNOOP_CALLS + TO_AMD
    await node.send(key("5"))  # the call's own events meanwhile are not the result
    await node.send(snoop_event("StasisEnd"))
    await node.send(snoop_event("StasisStart", "amd", "HUMAN", "HUMAN-800-800"))
    assert await detecting == ("HUMAN", "HUMAN-800-800")
    assert client.calls == [*SNOOP_CALLS, *TO_AMD, ("hangup", SNOOP)]
    assert SNOOP not in node.dispatcher


async def test_amd_without_a_result_in_time_is_not_sure() -> None:
    client = FakeClient()
    session, node = session_for(client)
    detecting = asyncio.create_task(session.detect_machine("ivr-auth-amd", 0.2))
    await asyncio.sleep(0.01)
    await node.send(snoop_event("StasisStart"))
    assert await detecting == ("NOTSURE", "TIMEOUT")
    assert client.calls[-1] == ("hangup", SNOOP)


async def test_a_call_hung_up_during_amd_raises_hung_up() -> None:
    client = FakeClient()
    session, node = session_for(client)
    detecting = asyncio.create_task(session.detect_machine("ivr-auth-amd", 5.0))
    await asyncio.sleep(0.01)
    await node.send(snoop_event("StasisStart"))
    await node.send({"type": "ChannelDestroyed", "channel": {"id": CHANNEL}, "cause": 16, "cause_txt": "Normal"})
    with pytest.raises(callsession.HungUp):
        await detecting
    assert client.calls[-1] == ("hangup", SNOOP)
    assert SNOOP not in node.dispatcher


async def test_a_snoop_that_ends_with_its_call_raises_hung_up() -> None:
    client = FakeClient()
    session, node = session_for(client)
    detecting = asyncio.create_task(session.detect_machine("ivr-auth-amd", 5.0))
    await asyncio.sleep(0.01)
    await node.send(snoop_event("StasisStart"))
    await node.send(snoop_event("ChannelDestroyed"))
    await asyncio.sleep(0.01)
    await node.send({"type": "ChannelDestroyed", "channel": {"id": CHANNEL}, "cause": 16, "cause_txt": "Normal"})
    with pytest.raises(callsession.HungUp):
        await detecting


async def test_a_snoop_that_ends_alone_leaves_the_call_not_sure() -> None:
    client = FakeClient()
    session, node = session_for(client)
    detecting = asyncio.create_task(session.detect_machine("ivr-auth-amd", 5.0))
    await asyncio.sleep(0.01)
    await node.send(snoop_event("ChannelDestroyed"))
    assert await detecting == ("NOTSURE", "SNOOP_ENDED")
