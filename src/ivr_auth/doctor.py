"""``ivr-auth doctor``: check a config against the live environment and say
in plain words what is wrong and what to do about it.

Every check runs on its own, bounded by a timeout, so one that fails or
hangs does not hide the others. Details never carry a password or the
server secret: whatever a check says passes through ``redact`` first.

A check ends ``ok``, ``WARN`` (worth knowing, but the config and the
environment agree: no controller connected yet, a setting that could not be
read) or ``FAIL``; only a failure makes the command exit 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import socket
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import aiohttp

from ivr_auth import asterisk_config, config, connections, errors, ports, prompts, sip_options, trunks
from ivr_auth.ari import client as ari_client
from ivr_auth.ari import release, slots
from ivr_auth.sms import bind_check
from ivr_auth.store import database, migrate

DEFAULT_TIMEOUT = 5.0
MAX_CLOCK_SKEW = 2.0
OPTIONS_TIMEOUT = 2.0
MASK = "********"
INBOUND_CONTEXT = asterisk_config.INBOUND_CONTEXT

Status = Literal["ok", "warn", "fail"]


class Problem(errors.IvrAuthError):
    """Something a check found wrong; the message says what to do."""


class Concern(errors.IvrAuthError):
    """Something a check could not confirm, or that is fine only for now:
    reported as WARN, and the command still exits 0."""


@dataclass(frozen=True)
class Result:
    check: str
    status: Status
    detail: str

    def line(self) -> str:
        label = "ok" if self.status == "ok" else self.status.upper()
        return f"{label:<4}  {self.check}: {self.detail}"


Check = Callable[[], Awaitable[str]]


def migration_problem(applied: Iterable[int], shipped: list[migrate.Migration]) -> str | None:
    """What is wrong with a database's applied migrations, or None."""
    done = set(applied)
    known = {m.version for m in shipped}
    unknown = sorted(done - known)
    if unknown:
        return (
            f"the database has migrations this ivr-auth does not ship ({', '.join(map(str, unknown))}): "
            "a newer ivr-auth migrated it; upgrade this one"
        )
    missing = [f"{m.version:04d}_{m.name}" for m in shipped if m.version not in done]
    if not missing:
        return None
    if not done:
        return f"not migrated (no ivr-auth schema, {len(shipped)} migrations shipped): run `ivr-auth migrate`"
    return (
        f"not migrated: {len(missing)} of {len(shipped)} migrations missing ({', '.join(missing)}): "
        "run `ivr-auth migrate`"
    )


def skew_problem(skew_seconds: float, limit: float = MAX_CLOCK_SKEW) -> str | None:
    if abs(skew_seconds) <= limit:
        return None
    side = "ahead of" if skew_seconds > 0 else "behind"
    return (
        f"Postgres' clock is {abs(skew_seconds):.1f}s {side} this host's (more than {limit:g}s): "
        "code expiry and leases go wrong; run NTP (chrony, systemd-timesyncd) on both"
    )


def redact(text: str, secrets: Iterable[str | None]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return text


def failed(results: Iterable[Result]) -> bool:
    return any(r.status == "fail" for r in results)


async def run(
    cfg: config.Config,
    *,
    library: prompts.Library | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    max_clock_skew: float = MAX_CLOCK_SKEW,
) -> list[Result]:
    """Run every check; one result per check, in a fixed order."""
    checks: list[tuple[str, Check]] = []
    secrets: list[str | None] = [cfg.server_secret, cfg.ari.password, *(t.password for t in cfg.outbound_trunks)]
    wait = min(OPTIONS_TIMEOUT, timeout)
    async with aiohttp.ClientSession() as session:
        try:
            endpoints = connections.from_config(cfg)
        except errors.IvrAuthError as exc:
            message = str(exc)

            async def unconfigured() -> str:
                raise Problem(message)

            checks.append(("connections", unconfigured))
            checks += [
                (name, _not_checked)
                for name in ("database", "clock", "ari", "asterisk modules", "ari apps", "sip timers")
            ]
            for trunk in cfg.outbound_trunks:
                checks += [
                    (f"trunk {trunk.name}", _not_checked),
                    (f"trunk {trunk.name} sip", _reach_check(trunk, wait)),
                ]
        else:
            secrets += [endpoints.ari_password, endpoints.server_secret, _url_password(endpoints.database_url)]
            ari = ari_client.AriClient(
                session, endpoints.ari_url, endpoints.ari_username, endpoints.ari_password, timeout=timeout
            )
            node = cfg.ari.node or urllib.parse.urlsplit(ari.base_url).netloc
            checks += [
                ("database", lambda: _database(endpoints.database_url, timeout)),
                ("clock", lambda: _clock(endpoints.database_url, timeout, max_clock_skew)),
                ("ari", lambda: _ari(ari)),
                ("asterisk modules", lambda: _modules(ari, node)),
                ("ari apps", lambda: _apps(ari, cfg, node)),
                (
                    "sip timers",
                    lambda: _timers(ari, cfg.dialer.trunk_timeout_seconds, node, cfg.verification.ring_timeout_seconds),
                ),
            ]
            for trunk in cfg.outbound_trunks:
                checks += [
                    (f"trunk {trunk.name}", _trunk_check(ari, trunk.name)),
                    (f"trunk {trunk.name} sip", _reach_check(trunk, wait)),
                ]
        for carrier in cfg.sms.carriers:
            secrets.append(carrier.password)
            checks.append((f"sms carrier {carrier.name}", _carrier_check(carrier, timeout)))
        checks.append(("prompts", lambda: _prompts(library or prompts.Library.from_config(cfg), cfg.languages)))
        checks.append(("fastagi", lambda: _agi(cfg)))
        outcomes = await asyncio.gather(*(_guarded(check, timeout) for _, check in checks))
    return [
        Result(name, status, redact(detail, secrets))
        for (name, _), (status, detail) in zip(checks, outcomes, strict=True)
    ]


async def _guarded(check: Check, timeout: float) -> tuple[Status, str]:
    try:
        return "ok", await asyncio.wait_for(check(), timeout)
    except Problem as exc:
        return "fail", str(exc)
    except Concern as exc:
        return "warn", str(exc)
    except TimeoutError:
        return "fail", f"no answer within {timeout:g}s"
    except Exception as exc:  # a doctor reports what it cannot check; it does not crash
        return "fail", f"could not check: {type(exc).__name__}: {exc}"


async def _not_checked() -> str:
    raise Problem("not checked: the connections are not configured (see above)")


@contextlib.asynccontextmanager
async def _connect(database_url: str, timeout: float) -> AsyncIterator[database.Connection]:
    try:
        async with database.Database(database_url).dedicated(connect_timeout=timeout) as conn:
            yield conn
    except errors.StoreUnavailable as exc:
        raise Problem(
            f"Postgres does not answer or refuses us ({exc}); check database_url, "
            "or for the embedded stack `ivr-auth-dev stack status` / `ivr-auth-dev stack up`"
        ) from exc


async def _database(database_url: str, timeout: float) -> str:
    async with _connect(database_url, timeout) as conn:
        applied = await migrate.applied_versions(conn)
    shipped = migrate.available()
    problem = migration_problem(applied, shipped)
    if problem:
        raise Problem(problem)
    return f"reachable, schema up to date (version {len(shipped)})"


async def _clock(database_url: str, timeout: float, limit: float) -> str:
    async with _connect(database_url, timeout) as conn:
        before = time.time()
        postgres = await database.clock(conn)
        after = time.time()
    skew = postgres - (before + after) / 2
    problem = skew_problem(skew, limit)
    if problem:
        raise Problem(problem)
    return f"Postgres and this host agree within {abs(skew):.2f}s"


def _ari_problem(exc: errors.AriError, ari: ari_client.AriClient) -> Problem:
    if exc.status == 401:
        return Problem(
            f"wrong ARI username or password (user {ari.username!r} at {ari.base_url}): "
            "check ari.username and ari.password, and the same user in Asterisk's ari.conf"
        )
    if isinstance(exc, errors.AriUnavailable):
        return Problem(
            f"Asterisk's ARI at {ari.base_url} does not answer ({exc}): is Asterisk running "
            "(`ivr-auth-dev stack status`), and is ari.url right?"
        )
    return Problem(str(exc))


async def _ari(ari: ari_client.AriClient) -> str:
    try:
        info = await ari.asterisk_info()
    except errors.AriError as exc:
        raise _ari_problem(exc, ari) from exc
    version = info.get("system", {}).get("version", "?")
    answers = f"Asterisk {version} answers at {ari.base_url} (user {ari.username!r})"
    return release_finding(release.Release.from_info(info), answers, dt.date.today())


def release_finding(found: release.Release | None, answers: str, today: dt.date) -> str:
    """The ARI check's line; a branch past its end of life is a warning."""
    if found is not None and found.past_end_of_life(today):
        ended = found.end_of_life()
        when = f" in {ended:%B %Y}" if ended else ""
        raise Concern(
            f"{answers}, but Asterisk {found.major} reached its end of life{when}: "
            "no more security fixes; run Asterisk 22 LTS (or 20) (docs/deploy.md)"
        )
    return answers


def _trunk_check(ari: ari_client.AriClient, name: str) -> Check:
    quoted = urllib.parse.quote(name, safe="")

    async def check() -> str:
        try:
            found = await ari.request("GET", f"endpoints/PJSIP/{quoted}")
        except errors.AriError as exc:
            if exc.status == 404:
                raise Problem(
                    f"trunk endpoint {name} missing on the Asterisk at {ari.base_url}: add a PJSIP endpoint "
                    f"named {name!r} there (the embedded stack writes it on `ivr-auth-dev stack up`)"
                ) from exc
            raise _ari_problem(exc, ari) from exc
        state = str((found or {}).get("state", "unknown"))
        if state == "offline":
            raise Problem(
                f"trunk endpoint {name} is offline (PJSIP qualify gets no answer): check the trunk's host and port"
            )
        try:
            settings = await ari.request("GET", f"asterisk/config/dynamic/res_pjsip/endpoint/{quoted}")
        except errors.AriError as exc:
            if exc.status == 401 or isinstance(exc, errors.AriUnavailable):
                raise _ari_problem(exc, ari) from exc
            return f"PJSIP endpoint {name} exists (state {state}; its context could not be read: {exc})"
        attributes = [a for a in settings or [] if isinstance(a, dict)]
        problem = endpoint_context_problem(attributes, name)
        if problem:
            raise Problem(problem)
        transport = endpoint_attribute(attributes, "transport")
        if transport:
            # An endpoint naming a transport Asterisk does not have sends nothing.
            try:
                await ari.request(
                    "GET", f"asterisk/config/dynamic/res_pjsip/transport/{urllib.parse.quote(transport, safe='')}"
                )
            except errors.AriError as exc:
                if exc.status != 404:
                    raise _ari_problem(exc, ari) from exc
                raise Problem(
                    f"trunk endpoint {name} sends through PJSIP transport {transport!r}, which this Asterisk does "
                    f"not have: set the trunk's pjsip_transport to one of the transports in your pjsip.conf "
                    "(then `ivr-auth asterisk-config` again), or add that transport"
                ) from exc
        via = f", through transport {transport}" if transport else ""
        return f"PJSIP endpoint {name} exists (state {state}), its calls enter {INBOUND_CONTEXT}{via}"

    return check


def endpoint_attribute(attributes: Iterable[Mapping[str, Any]], key: str) -> str:
    """One setting of an object as ARI's dynamic config lists it ("" when unset)."""
    return {str(a.get("attribute")): str(a.get("value")) for a in attributes}.get(key, "")


def endpoint_context_problem(attributes: Iterable[Mapping[str, Any]], name: str) -> str | None:
    """Whether calls from a trunk's endpoint, as ARI's dynamic config lists
    it, enter ivr-auth's inbound context."""
    context = endpoint_attribute(attributes, "context") or None
    if context == INBOUND_CONTEXT:
        return None
    return (
        f"calls from trunk endpoint {name} enter context {context!r}, not {INBOUND_CONTEXT}: inbound "
        f"verification never sees them; use the endpoint ivr-auth-pjsip.conf defines (`ivr-auth asterisk-config`), "
        f"or set context = {INBOUND_CONTEXT} in yours"
    )


def parse_asterisk_version(text: str) -> tuple[int, ...] | None:
    """``22.10.1+dfsg+...`` or ``16.28.0~dfsg-0+deb11u10`` as numbers; None for
    what does not read as a version (a build from git, say)."""
    found = release.Release.parse(text)
    return found.version if found else None


def missing_modules(found: Iterable[Mapping[str, Any]], version: tuple[int, ...] | None) -> list[str]:
    """The modules ivr-auth-modules.conf loads, for ``version``, that
    ARI's module list (``GET /asterisk/modules``) does not show running."""
    running = {str(m.get("name")) for m in found if str(m.get("status", "Running")).lower() == "running"}
    return [name for name in asterisk_config.modules(version or asterisk_config.DEFAULT_VERSION) if name not in running]


async def _modules(ari: ari_client.AriClient, node: str) -> str:
    try:
        info = await ari.asterisk_info()
        found = await ari.request("GET", "asterisk/modules")
    except errors.AriError as exc:
        raise _ari_problem(exc, ari) from exc
    text = str(info.get("system", {}).get("version", ""))
    version = parse_asterisk_version(text)
    missing = missing_modules([m for m in found or [] if isinstance(m, dict)], version)
    command = "ivr-auth asterisk-config" + (f" --asterisk-version {'.'.join(map(str, version))}" if version else "")
    if missing:
        raise Problem(
            f"Asterisk {text or '?'} on ARI node {node} has not loaded {', '.join(missing)}: add "
            f"`#include ivr-auth-modules.conf` to its modules.conf (`{command}` "
            "writes it; check that no noload line of yours unloads them) and restart Asterisk"
        )
    if version is None:
        raise Concern(f"every module loaded, for Asterisk 22; ARI node {node} gives no version ({text!r})")
    return f"every module ivr-auth uses is loaded ({len(asterisk_config.modules(version))}, Asterisk {text})"


def app_finding(
    registered: Iterable[str], *, ari_app: str, inbound_app: str, inbound_needed: bool, node: str
) -> tuple[Status, str]:
    """What the Stasis apps registered on an Asterisk say about the
    controllers connected to it. A controller registers ``<ari.app>-<name>``
    and holds an inbound slot ``<inbound.app>-<n>``; none connected is a
    warning, as the doctor is often run before they are started."""
    names = set(registered)
    held = sorted(slots.taken(inbound_app, names))
    held_apps = [slots.app(inbound_app, n) for n in held]
    prefix = f"{ari_app}-"
    controllers = sorted(
        n for n in names if n.startswith(prefix) and n != inbound_app and slots.slot_of(inbound_app, n) is None
    )
    if controllers:
        listed = ", ".join(controllers)
        if inbound_needed and not held:
            return "fail", (
                f"controllers are connected to ARI node {node} ({listed}) but none holds an inbound slot "
                f"{inbound_app}-<n>: calls to inbound.numbers find no one; give every controller the same inbound.app"
            )
        found = f"{len(controllers)} controller(s) connected to ARI node {node} ({listed})"
        if held:
            found += f"; inbound slots held: {', '.join(held_apps)}"
        if inbound_needed and len(held) < len(controllers):
            return "warn", (
                f"{found}: {len(controllers) - len(held)} controller(s) take no inbound call (all inbound.slots "
                "held, or still connecting); raise inbound.slots and regenerate the dialplan"
            )
        return "ok", found
    if held:
        return "warn", (
            f"no app {prefix}* on ARI node {node}, yet inbound slots are held ({', '.join(held_apps)}): a controller "
            "with another ari.app is connected; does this config's ari.app match the controllers'?"
        )
    expected = f"apps {prefix}*, {inbound_app}-<n>" if inbound_needed else f"apps {prefix}*"
    return "warn", (
        f"no controller is connected to ARI node {node}: {expected} not registered "
        "(is `ivr-auth run` or `ivr-auth controller` running?)"
    )


async def _apps(ari: ari_client.AriClient, cfg: config.Config, node: str) -> str:
    try:
        found = await ari.request("GET", "applications")
    except errors.AriError as exc:
        raise _ari_problem(exc, ari) from exc
    names = [str(app.get("name", "")) for app in found or [] if isinstance(app, dict)]
    status, detail = app_finding(
        names,
        ari_app=cfg.ari.app,
        inbound_app=cfg.inbound.app,
        inbound_needed=bool(cfg.inbound.numbers),
        node=node,
    )
    if status == "fail":
        raise Problem(detail)
    if status == "warn":
        raise Concern(detail)
    return detail


def timer_b_problem(attributes: Iterable[Mapping[str, Any]], timeout_seconds: float, node: str) -> str | None:
    """Whether PJSIP's INVITE timer B, as ARI's dynamic config lists the
    ``system`` object, matches ``dialer.trunk_timeout_seconds``. PJSIP keeps
    timer B at least 64 x T1, so that is what a silent trunk really gets."""
    values = {str(a.get("attribute")): str(a.get("value")) for a in attributes}
    wanted = trunks.sip_timers(timeout_seconds)
    advice = (
        f"set timer_t1 = {wanted['sip_timer_t1']} and timer_b = {wanted['sip_timer_b']} in the [system] "
        "section of its pjsip.conf and restart Asterisk"
    )
    try:
        timer_b = int(values["timer_b"])
        t1 = int(values.get("timer_t1", "500"))
    except (KeyError, ValueError):
        return f"ARI node {node} lists no usable timer_b ({values.get('timer_b')!r}): {advice}"
    effective = max(timer_b, 64 * t1)
    # The stack renders T1 rounded up, so its timer B is up to 63 ms over.
    if 0 <= effective - timeout_seconds * 1000 < 64:
        return None
    return (
        f"PJSIP's timer B on ARI node {node} is {effective} ms (timer_b {timer_b}, timer_t1 {t1}) but "
        f"dialer.trunk_timeout_seconds is {timeout_seconds:g}: a silent trunk is failed over after "
        f"{effective / 1000:g}s, not {timeout_seconds:g}s; {advice}"
    )


def ring_timer_concern(ring_timeout_seconds: float, trunk_timeout_seconds: float) -> str | None:
    """Our ring timer must outlast timer B: a call ended by it is taken for
    a callee who did not answer, so a trunk that never answers at all would
    be reported as the callee's no answer, and its calls counted."""
    if ring_timeout_seconds > trunk_timeout_seconds:
        return None
    return (
        f"verification.ring_timeout_seconds ({ring_timeout_seconds:g}s) is not longer than "
        f"dialer.trunk_timeout_seconds ({trunk_timeout_seconds:g}s): a trunk that does not answer at all "
        "is reported as the callee's no_answer; raise the ring time-out"
    )


async def _timers(ari: ari_client.AriClient, timeout_seconds: float, node: str, ring_timeout: float) -> str:
    try:
        found = await ari.request("GET", "asterisk/config/dynamic/res_pjsip/system/system")
    except errors.AriError as exc:
        if exc.status == 401 or isinstance(exc, errors.AriUnavailable):
            raise _ari_problem(exc, ari) from exc
        wanted = trunks.sip_timers(timeout_seconds)
        raise Concern(
            f"not checked: ARI node {node} does not show PJSIP's system settings ({exc}); check by hand that "
            f"its pjsip.conf [system] has timer_t1 = {wanted['sip_timer_t1']} and timer_b = {wanted['sip_timer_b']}"
        ) from exc
    problem = timer_b_problem([a for a in found or [] if isinstance(a, dict)], timeout_seconds, node)
    if problem:
        raise Problem(problem)
    if concern := ring_timer_concern(ring_timeout, timeout_seconds):
        raise Concern(f"PJSIP's timer B matches, but {concern}")
    return f"PJSIP's timer B matches dialer.trunk_timeout_seconds ({timeout_seconds:g}s)"


def _reach_check(trunk: config.TrunkConfig, wait: float) -> Check:
    async def check() -> str:
        where = f"{trunk.host}:{trunk.port} ({trunk.transport})"
        started = time.monotonic()
        try:
            response = await asyncio.wait_for(sip_options.send(trunk.host, trunk.port, trunk.transport), wait)
        except TimeoutError as exc:
            raise Problem(
                f"trunk {trunk.name} at {where} did not answer a SIP OPTIONS within {wait:g}s: is it up, are "
                "host, port and transport right, and does its firewall let this host in?"
            ) from exc
        except socket.gaierror as exc:
            raise Problem(f"trunk {trunk.name}: host {trunk.host!r} does not resolve ({exc.strerror or exc})") from exc
        except asyncio.IncompleteReadError as exc:
            raise Problem(
                f"trunk {trunk.name} at {where} closed the connection without answering a SIP OPTIONS"
            ) from exc
        except OSError as exc:
            raise Problem(
                f"trunk {trunk.name} at {where} refused a SIP OPTIONS ({exc.strerror or exc}): nothing listens "
                "there; check the trunk's host, port and transport"
            ) from exc
        ms = (time.monotonic() - started) * 1000
        return f"{where} answered a SIP OPTIONS with {response.status} {response.reason} in {ms:.0f} ms"

    return check


def _carrier_check(carrier: config.SmsCarrierConfig, timeout: float) -> Check:
    async def check() -> str:
        try:
            # Within the check's own bound, so that our message wins over "no answer".
            return await bind_check.check(carrier, timeout * 0.9)
        except errors.IvrAuthError as exc:
            raise Problem(str(exc)) from exc

    return check


def missing_prompts(library: prompts.Library, languages: Iterable[str]) -> list[str]:
    """Prompt files the index lists but the disk lacks, as ``lang/name.wav``."""
    missing = []
    for language in languages:
        names = library.names(language)
        if not names:
            missing.append(f"{language}/ (no prompts at all)")
        for name in sorted(names):
            if not Path(f"{library.path(name, language)}.wav").is_file():
                missing.append(f"{language}/{name}.wav")
    return missing


async def _prompts(library: prompts.Library, languages: tuple[str, ...]) -> str:
    missing = missing_prompts(library, languages)
    if missing:
        raise Problem(
            f"missing in {library.shipped_dir}: {', '.join(missing)}: reinstall ivr-auth (in a checkout, "
            "`git checkout src/ivr_auth/data/prompts` or `make prompts`)"
        )
    return f"every prompt present for {', '.join(languages)}"


async def _agi(cfg: config.Config) -> str:
    where = cfg.agi_host_port()
    if where is None:
        return "off (agi.listen is empty)"
    host, port = where
    if ports.is_free(host, port, socket.SOCK_STREAM):
        return f"port {port} on {host} is free"
    who = ports.holder(port, "tcp")
    if who and ("ivr-auth" in who or f"(pid {os.getpid()})" in who):
        return f"port {port} on {host} is held by ivr-auth itself ({who})"
    raise Problem(
        f"port {port} on {host} is in use by {who or 'another process'}: stop it, "
        "or choose another port with agi.listen"
    )


def _url_password(url: str) -> str | None:
    return urllib.parse.urlsplit(url).password
