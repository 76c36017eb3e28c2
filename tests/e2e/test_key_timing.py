"""Keys at every phase of the prompt (issue 14, item 1): a key pressed
before the prompt ends must never corrupt the next entry.

The prompt of a DTMF call is the greeting then "enter the N-digit code"
(English here: 2.3 s + 4.3 s), played as one playback that the first key
stops; an empty entry (``#`` alone) is asked again after "we did not get
your code", a wrong one after "that code is not right". One SIPp process
answers every call of a batch and keys, for each number dialled, its own
sequence, each "," a second of silence sent first, all at once: right at the
answer, during the greeting, during "enter the code", after the prompt has
ended, ``#`` during the greeting and the code during or after the re-prompt,
the code and ``#`` while the greeting plays, a wrong code then the right one
during "that code is not right", and ``*`` clearing a half-keyed entry.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ivr_auth import states
from ivr_auth_devkit import sipp
from tests.e2e.conftest import Api, Starter, service_config

pytestmark = pytest.mark.e2e

TERMINAL = {s.value for s in states.TERMINAL}
CODE = "246810"

# (number, keys after the answer: each "," one second, then keys 300 ms
# apart; the wrong codes keyed on the call before the right one)
PHASES: list[tuple[str, str, int]] = [
    ("+819055570201", f"{CODE}", 0),  # at the answer, as the prompt starts
    ("+819055570202", f",{CODE}", 0),  # during the greeting
    ("+819055570203", f",,,,{CODE}", 0),  # during "enter the code"
    ("+819055570204", f",,,,,,,,{CODE}", 0),  # after the prompt, first-key clock running
    ("+819055570205", f",#,,{CODE}", 0),  # "#" in the greeting, code during the re-prompt
    ("+819055570206", f",#,,,,,,,{CODE}", 0),  # "#" in the greeting, code after the re-prompt
    ("+819055570207", f",{CODE}#", 0),  # code and "#" while the greeting plays
    ("+819055570208", f",111111#,,{CODE}#", 1),  # wrong code in the greeting, right one after
    ("+819055570209", f",24*{CODE}", 0),  # "*" clears what was keyed so far
]


async def test_keys_at_every_phase_of_the_prompt_verify(api: Api, start_service: Starter) -> None:
    cfg = service_config()
    await start_service(api=False)
    created = [await api.create(number, code=CODE, language="en") for number, _, _ in PHASES]
    handset = sipp.Handset(
        port=cfg.trunk.port,
        host=cfg.trunk.host,
        keys_by_number={number: keys for number, keys, _ in PHASES},
        first_key_ms=0,
        calls=len(PHASES),
        timeout=90,
    )
    async with handset:
        done = await asyncio.gather(*(api.wait_for(c["id"], TERMINAL, timeout=80) for c in created))
        result = await handset.wait()

    outcomes = {
        number: (d["status"], d["reason"], d["code_attempts"]) for (number, _, _), d in zip(PHASES, done, strict=True)
    }
    assert outcomes == {number: ("verified", "code_matched", wrong) for number, _, wrong in PHASES}
    assert result.successful == len(PHASES), result.errors_log
    # The "#" alone is an empty entry, asked for again; it is never a wrong code.
    for (number, keys, _), request in zip(PHASES, created, strict=True):
        no_input = [e for e in (await api.events(request["id"]))["events"] if e["type"] == "no_input"]
        assert len(no_input) == (1 if keys.startswith(",#") else 0), number


@pytest.mark.parametrize("dtmf", ["rfc2833", "info"])
async def test_hash_in_the_greeting_then_the_code(api: Api, start_service: Starter, dtmf: str) -> None:
    """The case as a callee does it, on a handset of its own, with the keys
    as RFC 4733 events and as SIP INFO."""
    cfg = service_config()
    await start_service(api=False)
    created = await api.create("090-1234-5678", code=CODE, language="en")
    phone: dict[str, Any] = {"port": cfg.trunk.port, "host": cfg.trunk.host, "first_key_ms": 800, "dtmf": dtmf}
    async with sipp.Handset(keys=f"#,,{CODE}#", **phone) as handset:
        done = await api.wait_for(created["id"], TERMINAL)
        result = await handset.wait()
    assert (done["status"], done["reason"], done["code_attempts"]) == ("verified", "code_matched", 0)
    assert result.ok, result.errors_log
