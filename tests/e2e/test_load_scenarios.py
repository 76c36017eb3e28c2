"""The load scenarios of sipp-scenarios/ for real, a handful of calls each:
one SIPp process as the handsets of a mixed batch of DTMF requests (right,
repeated-digit, slow and wrong codes, silence, busy), chosen per dialled
number from its injection CSV; one SIPp process calling in from the caller
IDs of its CSV."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ivr_auth import states
from ivr_auth_devkit import sipp_load
from tests.e2e.conftest import Api, Starter, service_config

pytestmark = pytest.mark.e2e

TERMINAL = {s.value for s in states.TERMINAL}
Row = sipp_load.HandsetRow


async def test_one_handset_process_serves_a_mixed_batch(api: Api, start_service: Starter) -> None:
    cfg = service_config()
    # The test config's inter-digit timeout is 2 s: slow keys come 1.5 s apart.
    cases: list[tuple[dict[str, Any], sipp_load.HandsetRow, tuple[str, str]]] = [
        # (request fields, the handset's row, the terminal status and reason)
        ({"code": "135790"}, Row("+819055550101", "135790"), ("verified", "code_matched")),
        ({"code": "113355"}, Row("+819055550102", "113355", gap_ms=250), ("verified", "code_matched")),
        ({"code": "246802"}, Row("+819055550103", "246802", gap_ms=1500), ("verified", "code_matched")),
        (
            {"code": "135790", "max_code_attempts": 2},
            Row("+819055550104", "000000", rounds=2),
            ("failed", "code_attempts_exhausted"),
        ),
        ({"code": "135790"}, Row("+819055550105", behaviour="silent"), ("failed", "no_input")),
        ({"code": "135790"}, Row("+819055550106", behaviour="busy"), ("busy", "busy")),
    ]
    await start_service(api=False)
    created = [await api.create(row.number, **fields) for fields, row, _ in cases]
    # The busy line is dialled once per call attempt.
    calls = len(cases) - 1 + cfg.verification.max_call_attempts
    handsets = sipp_load.LoadHandsets(
        port=cfg.trunk.port, host=cfg.trunk.host, rows=[row for _, row, _ in cases], calls=calls, timeout=120
    )
    async with handsets:
        done = await asyncio.gather(*(api.wait_for(c["id"], TERMINAL, timeout=100) for c in created))
        result = await handsets.wait()

    assert [(d["status"], d["reason"]) for d in done] == [want for _, _, want in cases]
    assert result.successful == calls, result.errors_log
    assert [d["call_attempts"] for d in done] == [1] * 5 + [cfg.verification.max_call_attempts]
    wrong = done[3]
    assert wrong["code_attempts"] == 2


async def test_callers_from_the_csv_verify_their_requests(api: Api, start_service: Starter) -> None:
    cfg = service_config()
    await start_service(api=False)
    registered = ["09012340001", "09012340002", "09012340003"]
    created = [await api.create(n, method="inbound", language="en") for n in registered]
    did = created[0]["inbound_number"].replace("+81", "0")
    callers = sipp_load.LoadCallers(
        target_port=cfg.stack.sip_port, calls_from=[(n, did) for n in registered], rate=2, timeout=60
    )
    async with callers:
        done = await asyncio.gather(*(api.wait_for(c["id"], TERMINAL, timeout=45) for c in created))
        result = await callers.wait()

    assert [(d["status"], d["reason"]) for d in done] == [("verified", "caller_id_matched")] * 3
    assert result.successful == 3, result.errors_log
