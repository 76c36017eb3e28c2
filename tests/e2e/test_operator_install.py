"""Installed beside an operator's Asterisk: a fresh Asterisk (22 from the
tree `make setup` builds, and the host's own, 16 on Debian 12) whose
configuration is the one Debian's package ships in /etc/asterisk, changed
only by the ``#include`` lines ``ivr-auth asterisk-config`` asks for, runs
every method (dtmf, voice, inbound through Stasis and through FastAGI) with
the project's SIPp handsets, and the doctor finds it matches.

Besides the include lines, the stock files get only what any operator sets
for an instance of their own on a shared machine (``operator_changes``):

- asterisk.conf: ``[directories]`` used (not the ``(!)`` template) with the
  configuration, run, log, spool and database directories private to the test;
- http.conf: ``bindport`` of its own (the stock ``bindaddr`` is 127.0.0.1);
- pjsip.conf: one UDP transport on 127.0.0.1 and a port of its own (the
  stock file has none), named transport-udp, the name the trunks use by
  default (trunk.pjsip_transport) and Asterisk's sample pjsip.conf uses;
- iax.conf: a port of its own and ``bindaddr`` 127.0.0.1, because the stock
  modules.conf autoloads chan_iax2, which binds 0.0.0.0:4569.

Debian's manager.conf enables AMI on 127.0.0.1:5038; it is left alone (a
second instance only fails to bind AMI, which ivr-auth does not use). The
stock configuration loads every module (autoload), many of which log errors
for their own stock files; none of them is in ivr-auth's way.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from ivr_auth import asterisk_config, config, connections, doctor, errors, models, prompts, runtime, states
from ivr_auth import store as store_mod
from ivr_auth.store import tenants
from ivr_auth_devkit import sipp
from ivr_auth_devkit.stack import install
from tests.e2e.conftest import Api, Installed, service_config, start_runtime

pytestmark = pytest.mark.e2e

PHONE = "090-1234-5678"
TERMINAL = {s.value for s in states.TERMINAL}
STASIS_DID = "05012345678"
AGI_DID = "05012340000"
ARI_PASSWORD = "operator-ari-password"
# Left out of the config file an operator writes: they live in the root-only environment file.
SECRETS: Any = {"ari": {"password"}, "database_url": True, "server_secret": True}


def free_port(kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# The Asterisk 22 tree `make setup` builds (entered with chroot), and the host's own.
ASTERISKS = {"tree": install.DEFAULT_ROOT, "host": None}


@dataclass(frozen=True)
class Operator:
    asterisk: install.Install
    etc: Path
    cfg: config.Config
    sip_port: int

    @property
    def command(self) -> list[str]:
        return [*self.asterisk.command(), "-C", str(self.etc / "asterisk.conf")]

    def cli(self, command: str, timeout: float = 30) -> str:
        done = subprocess.run([*self.command, "-rx", command], capture_output=True, text=True, timeout=timeout)
        return done.stdout + done.stderr


def operator_changes(
    stock: Path, home: Path, sip_port: int, http_port: int, iax_port: int
) -> dict[str, list[tuple[str, str]]]:
    """Per stock file, (old, new) text replacements: the least an operator
    changes for a private instance. Each old text must be in the stock file
    once; an empty one appends."""
    directories = [("[directories](!)\n", "[directories]\n")]
    for key, sub in (
        ("astetcdir", "etc"),
        ("astvarlibdir", "lib"),
        ("astdbdir", "lib"),
        ("astkeydir", "lib"),
        ("astspooldir", "spool"),
        ("astrundir", "run"),
        ("astlogdir", "log"),
        ("astcachedir", "cache"),
    ):
        default = re.search(rf"^{key} => .*$", (stock / "asterisk.conf").read_text(), re.MULTILINE)
        assert default, f"the stock asterisk.conf has no {key}"
        directories.append((default.group(0) + "\n", f"{key} => {home / sub}\n"))
    return {
        "asterisk.conf": directories,
        "http.conf": [("\nbindaddr=127.0.0.1\n", f"\nbindaddr=127.0.0.1\nbindport={http_port}\n")],
        "iax.conf": [("\n[general]\n", f"\n[general]\nbindport={iax_port}\nbindaddr=127.0.0.1\n")],
        "pjsip.conf": [("", f"\n[transport-udp]\ntype = transport\nprotocol = udp\nbind = 127.0.0.1:{sip_port}\n")],
    }


def install_beside(
    asterisk: install.Install, home: Path, cfg: config.Config, sip_port: int, http_port: int, wheel: Installed
) -> Path:
    """The stock /etc/asterisk copied to ``home/etc``, the operator's changes
    made, and the files the installed wheel's ``ivr-auth asterisk-config``
    writes installed by #include."""
    etc = home / "etc"
    stock = asterisk.outside("/etc/asterisk")
    shutil.copytree(stock, etc)
    changes = operator_changes(stock, home, sip_port, http_port, free_port(socket.SOCK_DGRAM))
    for name, replacements in changes.items():
        path = etc / name
        text = path.read_text()
        for old, new in replacements:
            if old:
                assert text.count(old) == 1, f"{name}: the stock file no longer has {old!r} once"
                text = text.replace(old, new)
            else:
                text += new
        path.write_text(text)
    # As docs/deploy.md has it: the installed wheel's command writes the files
    # into a directory of their own, and they are copied beside the operator's.
    staged = home / "ivr-auth-asterisk"
    config_file = home / "ivr-auth.yaml"
    config_file.write_text(yaml.safe_dump(cfg.model_dump(mode="json", exclude=SECRETS)))
    version = ".".join(map(str, asterisk.version() or asterisk_config.DEFAULT_VERSION))
    written = subprocess.run(
        [
            str(wheel.command),
            "-c",
            str(config_file),
            "asterisk-config",
            "--out",
            str(staged),
            *("--asterisk-version", version),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "IVR_AUTH_ARI_PASSWORD": ARI_PASSWORD},
    )
    assert written.returncode == 0, written.stdout + written.stderr
    files = asterisk_config.generate(cfg, ARI_PASSWORD, asterisk.version())
    assert sorted(p.name for p in staged.iterdir()) == sorted([f.name for f in files] + [asterisk_config.INSTALL_NAME])
    for f in files:
        shutil.copy2(staged / f.name, etc / f.name)
        assert f.include_line in (staged / asterisk_config.INSTALL_NAME).read_text()
        with (etc / f.into).open("a") as target:
            target.write(f"\n{f.include_line}\n")
    for sub in ("lib", "spool", "run", "log", "cache"):
        (home / sub).mkdir()
    return etc


@pytest.fixture(scope="module", params=sorted(ASTERISKS))
def operator(
    request: pytest.FixtureRequest, local_stack: connections.Connections, installed: Installed
) -> Iterator[Operator]:
    asterisk = install.Install(config.StackConfig(), ASTERISKS[request.param])
    try:
        asterisk.command()
    except errors.IvrAuthError as exc:
        pytest.fail(f"no Asterisk ({request.param}) to install beside: {exc}")
    if not asterisk.outside("/etc/asterisk/asterisk.conf").is_file():
        pytest.fail(f"{asterisk.description} has no stock /etc/asterisk: run make setup")
    # A tree sees /tmp (the instance's home) and the prompts at the host's paths.
    asterisk.expose([prompts.SHIPPED_DIR])
    sip_port, http_port = free_port(socket.SOCK_DGRAM), free_port()
    cfg = service_config(
        ari={"password": ARI_PASSWORD, "url": f"http://127.0.0.1:{http_port}/ari"},
        agi={"listen": f"127.0.0.1:{free_port()}"},
    ).replace(database_url=local_stack.database_url, server_secret=local_stack.server_secret)
    home = Path(tempfile.mkdtemp(prefix="ivr-op-", dir="/tmp"))
    found = Operator(asterisk, install_beside(asterisk, home, cfg, sip_port, http_port, installed), cfg, sip_port)
    subprocess.run(found.command, check=True, timeout=30)
    try:
        deadline = time.monotonic() + 60
        while "fully booted" not in found.cli("core waitfullybooted", timeout=60):
            assert time.monotonic() < deadline, "the operator's Asterisk did not boot within 60 s"
            time.sleep(0.2)
        # An instance that missed its directories would use the chroot's /etc/asterisk.
        assert f"Configuration directory:     {found.etc}" in found.cli("core show settings")
        yield found
    finally:
        found.cli("core stop now")
        deadline = time.monotonic() + 15
        while (home / "run" / "asterisk.ctl").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        shutil.rmtree(home, ignore_errors=True)


@contextlib.asynccontextmanager
async def controller(operator: Operator, **overrides: Any) -> AsyncIterator[runtime.Runtime]:
    """A controller on the operator's Asterisk (and the test stack's Postgres)."""
    cfg = operator.cfg
    if overrides:
        cfg = config.with_overrides(cfg, **overrides)
    endpoints = connections.from_config(cfg)
    rt = await start_runtime(cfg, endpoints, prefix="operator", dialer=True, fastagi=True)
    try:
        yield rt
    finally:
        await asyncio.wait_for(rt.stop(grace=5), 90)


def handset(operator: Operator, **kwargs: Any) -> sipp.Handset:
    return sipp.Handset(port=operator.cfg.trunk.port, host=operator.cfg.trunk.host, **kwargs)


def caller(operator: Operator, frm: str, did: str, **kwargs: Any) -> sipp.Caller:
    return sipp.Caller(target_port=operator.sip_port, did=did, caller=frm, **kwargs)


async def test_the_doctor_finds_it_matches(operator: Operator, installed: Installed) -> None:
    async with controller(operator):
        results = {r.check: r for r in await doctor.run(operator.cfg)}
        # The installed wheel's doctor, with the secrets from the environment as its units have them.
        secrets = {
            "IVR_AUTH_ARI_PASSWORD": ARI_PASSWORD,
            "IVR_AUTH_DATABASE_URL": str(operator.cfg.database_url),
            "IVR_AUTH_SERVER_SECRET": str(operator.cfg.server_secret),
        }
        config_file = operator.etc.parent / "ivr-auth.yaml"
        shown = await asyncio.to_thread(
            subprocess.run,
            [str(installed.command), "-c", str(config_file), "doctor"],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, **secrets},
        )
    # Its other lines fail here for want of a trunk answering OPTIONS, and
    # FastAGI's port is the running controller's; these are the ones it matches by.
    assert shown.returncode in (0, 1), shown.stdout + shown.stderr
    assert "ok    asterisk modules: every module ivr-auth uses is loaded" in shown.stdout, shown.stdout
    assert "ok    trunk trunk: PJSIP endpoint trunk exists" in shown.stdout, shown.stdout
    for name in ("asterisk modules", "trunk trunk", "ari apps"):
        assert results[name].status == "ok", results[name]
    version = operator.asterisk.version()
    assert version is not None
    # Asterisk 16 (the host's, on Debian 12) is past its end of life: a warning.
    assert results["ari"].status == ("warn" if version < (20,) else "ok"), results["ari"]
    # The tests' short ring time-out earns a warning of its own.
    assert results["sip timers"].detail.startswith("PJSIP's timer B matches"), results["sip timers"]
    assert f"Asterisk {'.'.join(map(str, version))}" in results["asterisk modules"].detail


async def test_dtmf(operator: Operator, api: Api) -> None:
    async with controller(operator):
        created = await api.create(PHONE)
        async with handset(operator, keys=created["code"] + "#") as phone:
            done = await api.wait_for(created["id"], TERMINAL)
            result = await phone.wait()
    assert done["status"] == "verified", done
    assert result.ok, result.errors_log


async def test_voice_with_answering_machine_detection(operator: Operator, api: Api) -> None:
    # AMD runs in the operator's dialplan (ivr-auth-amd): a greeting, then a key.
    async with controller(operator, verification={"amd": True, "voice_key_timeout_seconds": 2.0}):
        created = await api.create(PHONE, method="voice", language="en")
        # "Hello?" then silence: AMD's HUMAN; then the key that asks for the code.
        async with handset(operator, keys="1", greeting_ms=500) as phone:
            done = await api.wait_for(created["id"], TERMINAL | {"delivered"}, timeout=60)
            result = await phone.wait()
    assert done["status"] == "delivered", done
    assert done["answered_by"] == "human"
    assert result.ok, result.errors_log


async def test_inbound_through_stasis(operator: Operator, api: Api) -> None:
    async with controller(operator):
        created = await api.create(PHONE, method="inbound", language="en")
        assert created["inbound_number"] == "+815012345678"
        async with caller(operator, "+819012345678", STASIS_DID) as phone:
            done = await api.wait_for(created["id"], TERMINAL, timeout=30)
            result = await phone.wait()
    assert done["status"] == "verified", done
    assert result.ok, result.errors_log


async def test_inbound_through_fastagi(
    operator: Operator, api: Api, store: store_mod.Store, tenant: tuple[models.Tenant, str]
) -> None:
    # The tenant publishes the number the operator's dialplan sends to ivr-auth-agi.
    await store.tenants.update(tenant[0].name, tenants.TenantChanges(inbound_numbers=("+815012340000",)))
    async with controller(operator):
        created = await api.create(PHONE, method="inbound", language="en")
        async with caller(operator, "+819012345678", AGI_DID) as phone:
            done = await api.wait_for(created["id"], TERMINAL, timeout=30)
            result = await phone.wait()
    assert done["status"] == "verified", done
    assert result.ok, result.errors_log
    assert (await api.events(created["id"]))["events"][-1]["detail"]["source"] == "agi"
