"""What the callee hears: a voice read-out in Japanese, recorded by Asterisk
from a snoop on the callee's channel (the audio sent to the phone), must be
there, not silent, and as long as the prompts it is made of."""

from __future__ import annotations

import array
import asyncio
import time
import uuid
import wave
from pathlib import Path

import pytest

from ivr_auth import prompts, states
from ivr_auth import store as store_mod
from ivr_auth.ari import node as ari_node
from ivr_auth_devkit import sipp
from tests.e2e.conftest import Api, Starter, service_config

pytestmark = pytest.mark.e2e

S = states.Status


def heard(path: Path) -> tuple[float, float]:
    """Duration (s) and RMS of a recording."""
    with wave.open(str(path), "rb") as wav:
        rate = wav.getframerate()
        frames = wav.readframes(wav.getnframes())
        assert wav.getsampwidth() == 2
    samples = array.array("h", frames)
    rms = (sum(s * s for s in samples) / max(len(samples), 1)) ** 0.5
    return len(samples) / rate, rms


async def test_the_callee_hears_the_japanese_read_out(
    api: Api, start_service: Starter, store: store_mod.Store, ari: ari_node.AriNode
) -> None:
    cfg = service_config(verification={"voice_key_timeout_seconds": 2.0, "voice_repeats": 0})
    await start_service(api=False, cfg=cfg)
    created = await api.create("090-1234-5678", method="voice", language="ja", code="2024")
    name = f"heard-{uuid.uuid4().hex[:12]}"
    async with sipp.Handset(port=cfg.trunk.port, host=cfg.trunk.host, keys="1", first_key_ms=2500) as phone:
        # Once answered, spy on what is sent to the callee and record it.
        deadline = time.monotonic() + 30
        while True:
            current = await store.verifications.get_by_id(uuid.UUID(created["id"]))
            assert current is not None
            if current.status is S.IN_CALL and current.channel_id:
                break
            assert time.monotonic() < deadline, f"never answered: {current.status}"
            await asyncio.sleep(0.05)
        snoop = f"snoop-{name}"
        await ari.client.request(
            "POST",
            f"channels/{current.channel_id}/snoop",
            params={"spy": "out", "app": ari.app, "snoopId": snoop},
        )
        await ari.client.request(
            "POST",
            f"channels/{snoop}/record",
            params={"name": name, "format": "wav", "maxDurationSeconds": 90, "ifExists": "overwrite"},
        )
        done = await api.wait_for(created["id"], {"delivered", *(s.value for s in states.TERMINAL)}, timeout=90)
        await phone.wait()
    assert done["status"] == "delivered", done

    recording = service_config().run_dir / "asterisk" / "spool" / "recording" / f"{name}.wav"
    deadline = time.monotonic() + 15
    while not recording.exists() or recording.stat().st_size < 1000:
        assert time.monotonic() < deadline, f"no recording at {recording}"
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)  # the snoop ends with the call; let the file be closed
    seconds, rms = heard(recording)

    library = prompts.Library()
    read_out = (
        library.duration_ms("code_is", "ja")
        + 2 * sum(library.duration_ms(f"digit_{d}", "ja") for d in "2024")
        + 2 * 1000  # the pause before each reading
        + 2 * 3 * 300  # between the digits
    ) / 1000
    # The recording starts after the answer: the key prompt (cut short by
    # the key), the read-out twice, the offer to repeat and goodbye.
    assert seconds >= read_out, (seconds, read_out)
    assert seconds <= read_out + 40
    assert rms > 200, "what the callee heard is silent"
