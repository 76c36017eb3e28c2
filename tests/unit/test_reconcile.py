"""After a reconnect: what a call waits for is asked of ARI, and the call is
told what it missed; orphaned channels are hung up once. Against a fake of
the REST client that answers as Asterisk would."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, cast

from ivr_auth import ari, callsession, causes, errors, flows, reconcile
from ivr_auth.ari import events
from ivr_auth.ari import node as ari_node

APP = "ivr-auth-test"


def ours(n: int = 1) -> str:
    return f"ivrauth-{uuid.UUID(int=n).hex}-1"


class FakeClient:
    """Asterisk's view: its channels (id -> state) and the playbacks it still has."""

    def __init__(self) -> None:
        self.channel_states: dict[str, str] = {}
        self.playing: set[str] = set()
        self.in_app: list[str] = []
        self.hung_up: list[str] = []
        self.unreachable = False
        self.in_flight = 0
        self.most_in_flight = 0

    async def channels(self) -> list[dict[str, Any]]:
        return [{"id": c, "state": s, "name": f"PJSIP/trunk-{c}"} for c, s in self.channel_states.items()]

    async def request(self, method: str, path: str, **_: Any) -> dict[str, Any]:
        assert (method, path.partition("/")[0]) == ("GET", "playbacks")
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.001)
            playback_id = path.partition("/")[2]
            if playback_id not in self.playing:
                raise errors.AriError(f"GET {path}: 404", status=404)
            return {"id": playback_id, "state": "playing"}
        finally:
            self.in_flight -= 1

    async def application(self, app: str) -> dict[str, Any]:
        return {"name": app, "channel_ids": list(self.in_app)}

    async def hangup(self, channel_id: str, reason: str = "normal") -> bool:
        if self.unreachable:
            raise errors.AriUnavailable("ARI DELETE channels: connection refused")
        self.hung_up.append(channel_id)
        return self.channel_states.pop(channel_id, None) is not None

    async def play(self, channel_id: str, media: list[str], *, playback_id: str, lang: str = "") -> dict[str, Any]:
        self.playing.add(playback_id)
        return {"id": playback_id}

    async def start_silence(self, channel_id: str) -> None:
        return None

    async def stop_playback(self, playback_id: str) -> bool:
        self.playing.discard(playback_id)
        return True


class FakeNode:
    def __init__(self) -> None:
        self.client = FakeClient()
        self.dispatcher = events.Dispatcher()
        self.app = APP
        self.name = "node-a"


class Told:
    def __init__(self) -> None:
        self.gone: list[str] = []

    async def __call__(self, channel_ids: list[str], why: str) -> None:
        self.gone.extend(channel_ids)


def setup(concurrency: int = reconcile.CONCURRENCY) -> tuple[FakeNode, callsession.Sessions, reconcile.Reconciler]:
    node = FakeNode()
    sessions = callsession.Sessions()
    return node, sessions, reconcile.Reconciler(cast(ari_node.AriNode, node), sessions, concurrency=concurrency)


def call_on(
    node: FakeNode, sessions: callsession.Sessions, channel_id: str, state: str = "Up"
) -> callsession.CallSession:
    node.client.channel_states[channel_id] = state
    return callsession.CallSession(cast(ari_node.AriNode, node), channel_id, sessions)


async def started(task: asyncio.Task[Any]) -> None:
    for _ in range(10):
        await asyncio.sleep(0)
    assert not task.done()


# --- pure logic ---------------------------------------------------------------------------


def test_our_channels_are_told_from_asterisks_own() -> None:
    assert flows.is_our_channel(ours())
    assert flows.is_our_channel(ours() + "-2")  # failed over to another trunk
    assert flows.is_our_channel(ours() + "-amd")  # the answering-machine snoop
    assert not flows.is_our_channel("1733480000.42")  # an inbound call's
    assert not flows.is_our_channel("ivrauth-notahex-1")
    assert not flows.is_our_channel(ours() + "-p1")  # a playback's id


def test_a_call_waiting_for_its_answer_hears_of_it_when_its_channel_is_up() -> None:
    (event,) = reconcile.missed(ours(), {"id": ours(), "state": "Up"}, awaiting_answer=True, finished=[], app=APP)

    assert event["type"] == "StasisStart"
    assert event["channel"]["id"] == ours()
    assert event["application"] == APP
    assert event[causes.MADE_UP]


def test_a_call_still_ringing_hears_that_it_rang() -> None:
    (event,) = reconcile.missed(ours(), {"id": ours(), "state": "Ringing"}, awaiting_answer=True, finished=[], app=APP)

    assert (event["type"], event["channel"]["state"]) == ("ChannelStateChange", "Ringing")


def test_each_prompt_asterisk_no_longer_has_ends_routed_to_its_channel() -> None:
    got = reconcile.missed(ours(), {"id": ours(), "state": "Up"}, awaiting_answer=False, finished=["p2", "p1"], app=APP)

    assert [e["playback"]["id"] for e in got] == ["p1", "p2"]
    assert {e["type"] for e in got} == {"PlaybackFinished"}
    assert all(events.channel_ids(e) == [ours()] for e in got)
    assert all(e[causes.MADE_UP] for e in got)


def test_nothing_is_made_up_for_a_call_that_waits_for_nothing() -> None:
    assert reconcile.missed(ours(), {"id": ours(), "state": "Up"}, awaiting_answer=False, finished=[], app=APP) == []


def test_orphans_are_ours_untracked_in_the_app_and_every_settled_one() -> None:
    in_app = [ours(1), ours(2), "1733480000.42"]
    found = reconcile.orphans(in_app, tracked={ours(2), ours(3)}, settled=[ours(3), "1733480000.7"])

    # ours(2) is a live call's; the inbound channel is not ours unless its call was settled.
    assert found == {ours(1), ours(3), "1733480000.7"}


# --- calls told what they missed ---------------------------------------------------------------


async def test_a_prompt_that_ended_while_the_websocket_was_down_lets_the_call_carry_on() -> None:
    node, sessions, reconciler = setup()
    session = call_on(node, sessions, ours())
    playing = asyncio.create_task(session.play(["sound:x"], lang="en"))
    await started(playing)
    (playback_id,) = session.playbacks
    node.client.playing.clear()  # it ended; its PlaybackFinished was lost

    done = await reconciler.after_reconnect(Told())

    await asyncio.wait_for(playing, 1.0)
    assert done.told == {"PlaybackFinished": 1}
    assert session.playbacks == set()
    assert playback_id.startswith(ours())


async def test_a_prompt_still_playing_is_left_to_its_own_event() -> None:
    node, sessions, reconciler = setup()
    session = call_on(node, sessions, ours())
    playing = asyncio.create_task(session.play(["sound:x"], lang="en"))
    await started(playing)

    done = await reconciler.after_reconnect(Told())

    await asyncio.sleep(0.01)
    assert not playing.done()
    assert not done.told
    playing.cancel()


async def test_a_collect_whose_prompt_ended_meanwhile_starts_its_first_key_clock() -> None:
    node, sessions, reconciler = setup()
    session = call_on(node, sessions, ours())
    options = callsession.CollectOptions(max_digits=4, first_digit_timeout=0.2, inter_digit_timeout=0.1)
    collecting = asyncio.create_task(session.collect(["sound:x"], options, lang="en"))
    await started(collecting)
    node.client.playing.clear()

    await reconciler.after_reconnect(Told())

    # Without the made-up end the prompt would be taken as playing for ever.
    entry = await asyncio.wait_for(collecting, 1.0)
    assert entry.value == ""


async def test_a_made_up_end_that_meets_the_real_one_is_taken_once() -> None:
    node, sessions, reconciler = setup()
    session = call_on(node, sessions, ours())
    options = callsession.CollectOptions(max_digits=1, first_digit_timeout=5.0, terminator=None, clear_key=None)
    collecting = asyncio.create_task(session.collect(["sound:x"], options, lang="en"))
    await started(collecting)
    (playback_id,) = session.playbacks
    node.client.playing.clear()
    await reconciler.after_reconnect(Told())
    await asyncio.sleep(0)
    await node.dispatcher({"type": "ChannelDtmfReceived", "channel": {"id": ours()}, "digit": "1"})
    real: ari.Event = {"type": "PlaybackFinished", "playback": {"id": playback_id, "target_uri": f"channel:{ours()}"}}
    await node.dispatcher(real)

    entry = await asyncio.wait_for(collecting, 1.0)

    assert entry.value == "1"


async def test_a_call_answered_while_the_websocket_was_down_is_answered() -> None:
    node, sessions, reconciler = setup()
    session = call_on(node, sessions, ours(), state="Up")
    waiting = asyncio.create_task(session.wait_answer(30.0))
    await started(waiting)
    assert session.awaiting_answer

    done = await reconciler.after_reconnect(Told())

    assert await asyncio.wait_for(waiting, 1.0) is None
    assert session.answered_at is not None
    assert not session.awaiting_answer
    assert done.told == {"StasisStart": 1}


async def test_a_call_still_ringing_waits_on_and_knows_it_rang() -> None:
    node, sessions, reconciler = setup()
    session = call_on(node, sessions, ours(), state="Ringing")
    waiting = asyncio.create_task(session.wait_answer(30.0))
    await started(waiting)

    await reconciler.after_reconnect(Told())
    await node.dispatcher({"type": "ChannelDestroyed", "channel": {"id": ours()}, "cause": 19, "cause_txt": "x"})

    unanswered = await asyncio.wait_for(waiting, 1.0)
    assert unanswered is not None
    assert unanswered.rang


async def test_a_call_whose_channel_is_gone_takes_the_gone_path() -> None:
    node, sessions, reconciler = setup()
    session = call_on(node, sessions, ours())
    del node.client.channel_states[ours()]
    told = Told()

    done = await reconciler.after_reconnect(told)

    assert told.gone == [ours()]
    assert done.gone == 1
    session.close()


async def test_many_calls_are_checked_a_bounded_number_at_a_time() -> None:
    node, sessions, reconciler = setup(concurrency=4)
    calls = [call_on(node, sessions, ours(n)) for n in range(1, 41)]
    plays = [asyncio.create_task(c.play(["sound:x"], lang="en")) for c in calls]
    await started(plays[-1])
    node.client.playing.clear()

    done = await reconciler.after_reconnect(Told())

    await asyncio.wait_for(asyncio.gather(*plays), 1.0)
    assert done.told == {"PlaybackFinished": 40}
    assert 1 < node.client.most_in_flight <= 4


async def test_a_reconnect_asks_nothing_of_calls_that_wait_for_nothing() -> None:
    node, sessions, reconciler = setup()
    call_on(node, sessions, ours())

    done = await reconciler.after_reconnect(Told())

    assert node.client.most_in_flight == 0
    assert not done.told


async def test_a_closed_call_is_no_longer_reconciled() -> None:
    node, sessions, _ = setup()
    session = call_on(node, sessions, ours())
    assert ours() in sessions
    session.close()
    assert ours() not in sessions
    assert len(sessions) == 0


# --- a returning node's orphans ---------------------------------------------------------------


async def test_a_returning_nodes_settled_channels_are_hung_up_once() -> None:
    node, _, reconciler = setup()
    node.client.channel_states = {ours(1): "Up", ours(2): "Ringing"}
    reconciler.node_lost([ours(1), ours(2)])

    first = await reconciler.after_reconnect(Told())
    second = await reconciler.after_reconnect(Told())

    assert sorted(first.hung_up) == [ours(1), ours(2)]
    assert second.hung_up == []
    assert sorted(node.client.hung_up) == [ours(1), ours(2)]


async def test_channels_of_ours_in_our_app_that_no_call_follows_are_hung_up() -> None:
    node, sessions, reconciler = setup()
    call_on(node, sessions, ours(1))
    node.client.channel_states[ours(2)] = "Up"
    node.client.in_app = [ours(1), ours(2), "1733480000.42"]

    done = await reconciler.after_reconnect(Told())

    assert done.hung_up == [ours(2)]
    assert node.client.hung_up == [ours(2)]


async def test_an_orphan_that_could_not_be_hung_up_is_tried_at_the_next_reconnect() -> None:
    node, _, reconciler = setup()
    node.client.channel_states[ours(1)] = "Up"
    reconciler.node_lost([ours(1)])
    node.client.unreachable = True

    assert (await reconciler.after_reconnect(Told())).hung_up == []
    node.client.unreachable = False
    assert (await reconciler.after_reconnect(Told())).hung_up == [ours(1)]
