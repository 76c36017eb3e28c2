"""The service as an operator installs it: the wheel built from this checkout,
``pip install``-ed into an empty venv outside it (scripts/check-wheel.py
builds, checks and installs it), runs ``doctor``, and ``api`` and
``controller`` as the systemd units it writes run them (inside their
sandbox, rebuilt without systemd), against the test stack's Postgres and
Asterisk, given only by URL in the environment, and a call placed through
it plays the prompts that shipped in the venv's site-packages (Asterisk's
own playback events say which files it played) and ends verified."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import aiohttp
import pytest
import yaml

from ivr_auth import connections
from ivr_auth.ari import client as ari_client
from ivr_auth_devkit import sipp, stack
from tests.conftest import ROOT, TEST_SETTINGS
from tests.e2e.conftest import FAST, Installed

pytestmark = pytest.mark.e2e

PHONE = "090-1234-5678"
APP = "ivr-auth-wheel"
OBSERVER_APP = "ivr-auth-wheel-observer"
STOP_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """Outside the checkout: the processes' working directory and their config."""
    assert not tmp_path.resolve().is_relative_to(ROOT)
    return tmp_path


@pytest.fixture
def config_file(workdir: Path) -> Path:
    """The test trunk (the SIPp handsets' port), ports of its own for HTTP,
    metrics and FastAGI, and Stasis apps of its own; no connections: those
    come from the environment."""
    trunk = TEST_SETTINGS["trunk"]
    assert isinstance(trunk, dict)
    settings: dict[str, Any] = copy.deepcopy(FAST)
    settings["trunk"].update(trunk)
    settings["dialer"]["shutdown_grace_seconds"] = 5
    settings.update(
        ari={"app": APP},
        inbound={"numbers": [], "agi_numbers": [], "app": f"{APP}-inbound"},
        http={"listen": f"127.0.0.1:{free_port()}"},
        metrics={"listen": f"127.0.0.1:{free_port()}"},
        agi={"listen": f"127.0.0.1:{free_port()}"},
        logging={"format": "json"},
    )
    path = workdir / "ivr-auth.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


@pytest.fixture
def environment(local_stack: connections.Connections) -> dict[str, str]:
    """This environment without anything pointing at the checkout or its venv,
    plus the stack's connections as the operator gives them: by URL."""
    dropped = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if k not in dropped and not k.startswith("IVR_AUTH_")}
    return {**env, **stack.environment(local_stack)}


def listen_url(config_file: Path, section: str) -> str:
    return f"http://{yaml.safe_load(config_file.read_text())[section]['listen']}"


@dataclass
class Service:
    """``ivr-auth`` commands of the installed venv, run as an operator would."""

    installed: Installed
    config_file: Path
    workdir: Path
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.installed.command), "-c", str(self.config_file), *args],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def python(self, code: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.installed.venv / "bin" / "python"), "-c", code],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def start(self, command: str) -> Process:
        """``ivr-auth COMMAND`` as its systemd unit runs it: the unit that
        ``ivr-auth systemd-units`` writes, its ``ExecStart=`` run inside its
        sandbox, rebuilt without systemd (tests/support/sandbox.py)."""
        units = self.workdir / "units"
        if not units.exists():
            written = self.run("systemd-units", "--out", str(units), "--config-file", str(self.config_file))
            assert written.returncode == 0, written.stderr
        log = (self.workdir / f"{command}.log").open("w")
        proc = subprocess.Popen(
            [
                str(self.installed.venv / "bin" / "python"),
                str(ROOT / "tests" / "support" / "sandbox.py"),
                str(units / f"ivr-auth-{command}.service"),
            ],
            cwd=self.workdir,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        return Process(command, proc, log, self.workdir / f"{command}.log")


@dataclass
class Process:
    name: str
    proc: subprocess.Popen[bytes]
    log: IO[str]
    log_path: Path

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    async def wait_for_line(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            assert self.proc.poll() is None, f"{self.name} exited {self.proc.returncode}:\n{self.output()}"
            assert time.monotonic() < deadline, f"{self.name} never said {text!r}:\n{self.output()}"
            await asyncio.sleep(0.1)

    async def stop(self) -> int:
        """SIGTERM (the service drains and stops), SIGKILL after STOP_TIMEOUT."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.proc.wait, STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                await asyncio.to_thread(self.proc.wait, 10)
        self.log.close()
        return self.proc.returncode


@pytest.fixture
def service(
    installed: Installed, config_file: Path, workdir: Path, environment: dict[str, str], clean_queue: None
) -> Service:
    return Service(installed, config_file, workdir, environment)


@contextlib.asynccontextmanager
async def running(service: Service, command: str, ready: str) -> AsyncIterator[Process]:
    """``ivr-auth COMMAND`` in the background, once it says ``ready``; stopped on exit."""
    process = service.start(command)
    try:
        await process.wait_for_line(ready)
        yield process
    except BaseException:
        await process.stop()
        raise
    code = await process.stop()
    assert code == 0, f"{command} did not stop cleanly ({code}):\n{process.output()}"


@dataclass
class Observer:
    """Asterisk's view: every event of a subscribeAll websocket (no call is
    ours), with when it came (time.monotonic())."""

    events: list[tuple[float, dict[str, Any]]]

    def playbacks(self) -> list[tuple[float, str, dict[str, Any]]]:
        """(when, type, playback) of every Playback* event, in order."""
        return [(t, e["type"], e["playback"]) for t, e in self.events if str(e.get("type")).startswith("Playback")]


@contextlib.asynccontextmanager
async def observing(local_stack: connections.Connections) -> AsyncIterator[Observer]:
    observer = Observer([])
    ws_base = "ws" + local_stack.ari_url.rstrip("/").removeprefix("http")
    url = f"{ws_base}/events?app={OBSERVER_APP}&subscribeAll=true"
    headers = {"Authorization": ari_client.authorization(local_stack.ari_username, local_stack.ari_password)}
    async with aiohttp.ClientSession() as session, session.ws_connect(url, headers=headers, heartbeat=10) as ws:

        async def read() -> None:
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.TEXT:
                    observer.events.append((time.monotonic(), json.loads(msg.data)))

        reader = asyncio.create_task(read())
        try:
            yield observer
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


async def wait_until_settled(session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        async with session.get(url, headers=headers) as resp:
            current: dict[str, Any] = await resp.json()
        if current["status"] not in ("queued", "calling", "in_call"):
            return current
        assert time.monotonic() < deadline, current
        await asyncio.sleep(0.1)


@contextlib.contextmanager
def timed(label: str, timings: dict[str, float]) -> Iterator[None]:
    started = time.monotonic()
    yield
    timings[label] = round(time.monotonic() - started, 2)


async def test_the_installed_wheel_runs_the_service_and_plays_its_prompts(
    service: Service,
    installed: Installed,
    local_stack: connections.Connections,
    http_session: aiohttp.ClientSession,
) -> None:
    timings: dict[str, float] = {}
    cfg = yaml.safe_load(service.config_file.read_text())
    trunk_port, trunk_host = cfg["trunk"]["port"], cfg["trunk"].get("host", "127.0.0.1")

    # The package finds its prompts in the venv, not in this checkout.
    shown = await asyncio.to_thread(service.python, "from ivr_auth import data; print(data.PROMPTS_DIR)")
    assert shown.returncode == 0, shown.stderr
    prompts_dir = Path(shown.stdout.strip())
    assert prompts_dir == installed.site_packages / "ivr_auth" / "data" / "prompts"

    # doctor: all ok (or WARN) with the trunk answering its SIP OPTIONS.
    with timed("doctor", timings):
        options = sipp.Handset(port=trunk_port, host=trunk_host, scenario="uas-options-200.xml", calls=1000)
        await options.start()
        try:
            doctor = await asyncio.to_thread(service.run, "doctor")
        finally:
            await options.stop()
            await options.wait(10)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    lines = {line.split(":", 1)[0].split(None, 1)[1]: line for line in doctor.stdout.splitlines() if ":" in line}
    assert lines["prompts"].startswith("ok "), doctor.stdout
    assert lines["database"].startswith("ok "), doctor.stdout
    # ok, or the end-of-life warning on an Asterisk older than 20 (make test-e2e-host on Debian 12).
    assert lines["ari"].startswith("ok ") or (
        lines["ari"].startswith("WARN ") and "reached its end of life" in lines["ari"]
    ), doctor.stdout

    tenant = await asyncio.to_thread(service.run, "tenant", "create", f"wheel-{uuid.uuid4().hex[:12]}")
    assert tenant.returncode == 0, tenant.stderr
    headers = {"Authorization": f"Bearer {tenant.stdout.strip().splitlines()[-1]}"}
    api_url = listen_url(service.config_file, "http")

    up_started = time.monotonic()
    async with (
        running(service, "api", "ivr-auth API on") as api,
        running(service, "controller", "ivr-auth controller") as controller,
        observing(local_stack) as observer,
    ):
        timings["api and controller up"] = round(time.monotonic() - up_started, 2)
        async with http_session.get(f"{api_url}/healthz") as resp:
            assert resp.status == 200, await resp.text()
        async with http_session.get(f"{listen_url(service.config_file, 'metrics')}/metrics") as resp:
            assert resp.status == 200  # the controller's own metrics

        with timed("verified call", timings):
            body = {"phone": PHONE, "method": "dtmf"}
            async with http_session.post(f"{api_url}/v1/verifications", json=body, headers=headers) as resp:
                created = await resp.json()
                assert resp.status == 201, created
            async with sipp.Handset(port=trunk_port, host=trunk_host, keys=created["code"] + "#") as phone:
                current = await wait_until_settled(http_session, f"{api_url}/v1/verifications/{created['id']}", headers)
                result = await phone.wait()
        assert current["status"] == "verified", (current, controller.output())
        assert result.ok, result.errors_log
        # The last prompt ends as the call does: let its event come.
        await asyncio.sleep(0.5)
        logs = api.output() + controller.output()
        stop_started = time.monotonic()
    timings["api and controller stopped"] = round(time.monotonic() - stop_started, 2)
    print(f"timings (s): {timings}")
    assert "ivr_auth_devkit" not in logs

    # What Asterisk played on this call: the shipped prompts, read from the venv,
    # each for as long as it lasts (a file it cannot open is skipped at once).
    timeline = observer.playbacks()
    print("playbacks (s, event, file):", [(round(t - timeline[0][0], 2), k, p["media_uri"]) for t, k, p in timeline])
    uris = {p[key] for _, _, p in timeline for key in ("media_uri", "next_media_uri") if key in p}
    assert uris, f"no playback seen: {[e.get('type') for _, e in observer.events]}"
    files = {Path(uri.removeprefix("sound:")) for uri in uris if uri.startswith("sound:")}
    assert len(files) == len(uris), uris
    assert all(path.is_relative_to(prompts_dir) for path in files), uris
    index = json.loads((prompts_dir / "index.json").read_text())
    # The result is played to its end before the hang-up.
    verified = played_for(timeline, prompts_dir / "ja" / "verified")
    assert verified >= 0.9 * index["ja"]["verified"]["duration_ms"] / 1000, timeline
    # The handset keys 1.5 s after answering: the greeting plays until then
    # (1.4 s on an idle machine; less when the play request comes late).
    assert played_for(timeline, prompts_dir / "ja" / "greeting") >= 0.5, timeline
    assert all(p["state"] == "done" for _, kind, p in timeline if kind == "PlaybackFinished"), timeline


def played_for(timeline: list[tuple[float, str, dict[str, Any]]], file: Path) -> float:
    """Seconds from a file's start in a playback to that playback's next event."""
    uri = f"sound:{file}"
    for n, (started, kind, playback) in enumerate(timeline):
        if kind in ("PlaybackStarted", "PlaybackContinuing") and playback["media_uri"] == uri:
            after = [t for t, _, p in timeline[n + 1 :] if p["id"] == playback["id"]]
            assert after, f"{uri} never ended: {timeline}"
            return after[0] - started
    raise AssertionError(f"{uri} never played: {timeline}")
