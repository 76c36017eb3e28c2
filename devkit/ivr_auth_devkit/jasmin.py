"""The SMS gateway tier of the tests: Jasmin 0.11.1 between an SMPP client and
the test SMSC, with a Redis and a RabbitMQ of its own, all on free loopback
ports in a run directory of its own.

``start`` brings up redis-server, a RabbitMQ node (its own epmd, Mnesia and
log directories, Erlang distribution on loopback) and jasmind, then sets
Jasmin up through jCli: a group and a user for the caller's system_id (no
throughput cap), an SMPP client connector to the upstream SMSC (transceiver,
no throughput cap), a DefaultRoute of MT to it; it returns the port of
Jasmin's SMPP server once the connector is bound. The API is synchronous;
asyncio callers use ``asyncio.to_thread``.

``make setup`` (scripts/setup-jasmin.sh) installs Jasmin in
/var/lib/ivr-auth-dev/jasmin (``IVR_AUTH_JASMIN_VENV``) with the fix of its
receipt mapping, and Debian's rabbitmq-server and redis-server.

How Jasmin 0.11.1 behaves towards an SMPP client bound to it (found with
tests/e2e/test_jasmin_gateway.py against the npm SMSC):

- submit_sm: Jasmin answers ESME_ROK at once, with a message_id of its own
  (a UUID, 36 characters), before the message goes upstream; the SMSC's own
  id never reaches the client. Through Jasmin, "sent" means "Jasmin queued it".
- An upstream refusal (submit_sm_resp 0x0B ESME_RINVDSTADR, 0x45
  ESME_RSUBMITFAIL and any status outside Jasmin's retry list) is final and the
  client is told only when it asked for receipts on failure only
  (registered_delivery 2): a receipt with stat:UNDELIV err:99, message_state 5.
  With registered_delivery 1 (a receipt whatever the outcome) it gets nothing,
  ever: the message stays accepted. Retried instead of refused: 0x08 RSYSERR
  (2 times, 30 s apart), 0x58 RTHROTTLED (20 times, 30 s), 0x14 RMSGQFUL
  (2 times, 180 s), 0x61 RINVSCHED (2 times, 300 s).
- 0x58 from upstream also holds back every message queued behind the
  throttled one on that connector until it is accepted: two submitted right
  after it reached the SMSC only with its retry 30 s later (with the SMSC
  throttling on, none of them had 75 s later; up to 20 retries is 10 min).
- Upstream receipts DELIVRD, UNDELIV, EXPIRED and REJECTD come back as
  deliver_sm (esm_class 0x04) with receipted_message_id = Jasmin's id, the
  message_state TLV (2, 5, 3, 8) and the text "id:<Jasmin's id> submit
  date:YYMMDDhhmm done date:YYMMDDhhmm stat:<stat> err:<the SMSC's err>",
  without sub:, dlvrd: or text: fields.
- Concatenated parts sent as UDH (esm_class 0x40, data_coding 8) go upstream
  one submit_sm each, unchanged (reference, total and sequence kept); each
  part has its own id and its own receipt. source_addr with TON 5/NPI 0 and
  the destination's TON 1/NPI 1 are kept, and so is validity_period, absolute
  ("YYMMDDhhmmss000+") or relative ("...R"). message_payload: the issue found
  Jasmin dropping such messages after the first; not seen here with smpplib
  (three 420-octet UCS-2 payloads, to one destination or three, went upstream
  unchanged as message_payload, with receipts), but the sender sends UDH parts.
- Receipts go to the system_id, not to the session: after the client's
  connection dropped and it bound again, the receipt comes on the new session.
  One that arrives while no session of the system_id is bound is thrown again
  every ``dlr_retry_delay`` seconds (Jasmin's default 30) up to
  ``dlr_max_retries`` times (3), then dropped.
- The upstream connection lost: the connector binds again after 2 s (set
  here; Jasmin's default 10 s). A message submitted meanwhile is accepted
  and held: it went upstream 30 s later (sm-listener's
  submit_retrial_delay_smppc_not_ready).
- Without scripts/setup-jasmin.sh's fix, every submit_sm_resp fails in
  Jasmin ("'SubmitSM' object has no attribute 'response'"), no receipt
  mapping is stored, and each upstream receipt ends as DLRMapNotFound: the
  client gets no receipt at all.
- Jasmin cannot parse a bind_*_resp whose system_id is longer than SMPP 3.4's
  16 octets (with the NUL) and never binds.
- Cost here: about 4.5 s to start (RabbitMQ 4 s of it, jasmind 0.4 s),
  about 230 MB resident (Erlang 141, jasmind 72, Redis 11), 1.3 s to stop.
  Message content is kept out of Jasmin's logs (log_privacy).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from ivr_auth import errors
from ivr_auth_devkit.stack import proc

logger = logging.getLogger(__name__)

DEFAULT_VENV = Path("/var/lib/ivr-auth-dev/jasmin")
VENV_ENV = "IVR_AUTH_JASMIN_VENV"
HOST = "127.0.0.1"
CONNECTOR = "upstream"
GROUP = "ivrauth"
JCLI_USERNAME = "jcliadmin"
RABBITMQ_SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
EPMD_GLOB = "/usr/lib/erlang/erts-*/bin/epmd"

# jasmind.py takes a lock on the fixed path /tmp/jasmind so that one gateway
# runs per machine; the tests run one per test, so jasmind's daemon class is
# started without that lock (everything else as its __main__ does).
LAUNCHER = """\
import importlib.util, signal, sys
from twisted.internet import reactor
spec = importlib.util.spec_from_file_location("jasmind_script", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
options = module.Options()
options.parseOptions(sys.argv[2:])
daemon = module.JasminDaemon(options)
signal.signal(signal.SIGINT, daemon.sighandler_stop)
signal.signal(signal.SIGTERM, daemon.sighandler_stop)
daemon.start()
reactor.run()
"""

CONFIG = """\
# Written by ivr_auth_devkit.jasmin for one run; every port on loopback.
[smpp-server]
id = smpps_01
bind = {host}
port = {smpp}
log_privacy = True

[smpp-server-pb]
bind = {host}
port = {smpps_pb}

[client-management]
bind = {host}
port = {cm_pb}

[router]
bind = {host}
port = {router_pb}

[jcli]
bind = {host}
port = {jcli}
admin_username = {jcli_username}
admin_password = {jcli_password_md5}

[http-api]
bind = {host}
port = {http}
log_privacy = True

[amqp-broker]
host = {host}
port = {amqp}
vhost = /
username = guest
password = guest
heartbeat = 0

[redis-client]
host = {host}
port = {redis}
dbid = 0
poolsize = 10

[sm-listener]
log_privacy = True
submit_retrial_delay_smppc_not_ready = {not_ready_retry_delay}

[dlr]
log_privacy = True

[dlr-thrower]
dlr_pdu = deliver_sm
retry_delay = {dlr_retry_delay}
max_retries = {dlr_max_retries}
"""

# The pid of the process that started a tier, in its run directory.
OWNER_FILE = "owner.pid"
PORT_NAMES = ("redis", "amqp", "dist", "epmd", "smpp", "smpps_pb", "cm_pb", "router_pb", "jcli", "http")


class JasminError(errors.StackError):
    """The Jasmin gateway tier could not be brought up."""


def venv_dir() -> Path:
    """Jasmin's venv; NotInstalled naming ``make setup`` when it is missing."""
    venv = Path(os.environ.get(VENV_ENV) or DEFAULT_VENV)
    if not (venv / "bin" / "jasmind.py").exists() or not (venv / ".ivr-auth-stamp").exists():
        raise errors.NotInstalled(f"Jasmin is not installed in {venv}: run `make setup` (scripts/setup-jasmin.sh)")
    return venv


class Jasmin:
    """One Jasmin gateway with its Redis and RabbitMQ; ``start`` then ``stop``."""

    def __init__(
        self,
        base_dir: Path,
        *,
        dlr_retry_delay: int = 30,
        dlr_max_retries: int = 3,
        not_ready_retry_delay: int = 30,
        keep_dir: bool = False,
    ) -> None:
        """``base_dir``: a directory of its own is made under it per start
        (removed by ``stop`` unless ``keep_dir``). ``dlr_retry_delay`` and
        ``dlr_max_retries``: how often Jasmin retries throwing a receipt to a
        client that is not bound (Jasmin's defaults: 30 s, 3 times).
        ``not_ready_retry_delay``: how long a message waits that came while
        the connector to the upstream SMSC was not bound (Jasmin's
        submit_retrial_delay_smppc_not_ready, 30 s by default)."""
        self.base_dir = base_dir
        self.dlr_retry_delay = dlr_retry_delay
        self.dlr_max_retries = dlr_max_retries
        self.not_ready_retry_delay = not_ready_retry_delay
        self.keep_dir = keep_dir
        self.home: Path | None = None
        self.ports: dict[str, int] = {}
        self._jcli_password = secrets.token_hex(8)
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._step = ""
        # How long each step of the last start took, in seconds.
        self.timings: dict[str, float] = {}

    def __repr__(self) -> str:
        return f"Jasmin(home={self.home}, port={self.ports.get('smpp')})"

    @property
    def host(self) -> str:
        return HOST

    @property
    def port(self) -> int:
        """The SMPP server's port, for clients."""
        if "smpp" not in self.ports:
            raise JasminError("Jasmin is not started")
        return self.ports["smpp"]

    def log_file(self, name: str) -> Path:
        """A component's log: redis, rabbitmq, epmd, jasmind (stdout), or one of
        Jasmin's own logs in log/ (messages, dlr-thrower, default-upstream, ...)."""
        home = self._require_home()
        if name in ("redis", "rabbitmq", "epmd", "jasmind"):
            return home / f"{name}.log"
        return home / "log" / f"{name}.log"

    def start(
        self,
        upstream_host: str,
        upstream_port: int,
        upstream_system_id: str,
        upstream_password: str,
        *,
        system_id: str,
        password: str,
        timeout: float = 60.0,
    ) -> int:
        """Bring the tier up and return the SMPP port clients bind to as
        ``system_id``/``password``. JasminError names the step that failed and
        its log; what started is stopped again."""
        if self._processes:
            raise JasminError("Jasmin is started already")
        venv = venv_dir()
        deadline = time.monotonic() + timeout
        self.base_dir.mkdir(parents=True, exist_ok=True)
        _stop_orphans(self.base_dir)
        self.home = Path(tempfile.mkdtemp(prefix="jasmin-", dir=self.base_dir))
        (self.home / OWNER_FILE).write_text(str(os.getpid()))
        self.ports = dict(zip(PORT_NAMES, _free_ports(len(PORT_NAMES)), strict=True))
        steps: list[tuple[str, Callable[[], None]]] = [
            ("redis", lambda: self._start_redis(deadline)),
            ("rabbitmq", lambda: self._start_rabbitmq(deadline)),
            ("jasmind", lambda: self._start_jasmind(venv, deadline)),
            (
                "jcli",
                lambda: self._configure(
                    upstream_host, upstream_port, upstream_system_id, upstream_password, system_id, password
                ),
            ),
            ("connector bind", lambda: self._wait_bound(deadline)),
        ]
        self.timings = {}
        try:
            for step, run in steps:
                self._step = step
                began = time.monotonic()
                run()
                self.timings[step] = time.monotonic() - began
        except BaseException as exc:
            log = self._step_log()
            # The run directory stays for its logs.
            self.stop(remove=False)
            if isinstance(exc, JasminError | OSError):
                tail = f":\n{proc.tail(log)}" if log is not None else ""
                raise JasminError(f"Jasmin's {self._step} step failed: {exc}; its log is {log}{tail}") from exc
            raise
        logger.info(
            "Jasmin up in %.1fs (%s): SMPP %s:%s -> %s:%s",
            sum(self.timings.values()),
            ", ".join(f"{step} {seconds:.1f}s" for step, seconds in self.timings.items()),
            HOST,
            self.port,
            upstream_host,
            upstream_port,
        )
        return self.port

    def stop(self, timeout: float = 15.0, *, remove: bool = True) -> None:
        """Stop jasmind, RabbitMQ, epmd and Redis (in that order), each within
        ``timeout`` before it is killed; then remove the run directory
        (unless ``keep_dir`` or not ``remove``)."""
        for name in ("jasmind", "rabbitmq", "epmd", "redis"):
            process = self._processes.pop(name, None)
            if process is not None:
                _terminate(process, timeout)
        if self.home is not None and remove and not self.keep_dir:
            shutil.rmtree(self.home, ignore_errors=True)

    # jCli

    def jcli(self, *commands: str, timeout: float = 10.0) -> str:
        """Run jCli commands (one a line, sub-mode lines included) and return
        what jCli answered to them."""
        with self._jcli_session(timeout) as session:
            return "".join(session.run(line) for line in commands)

    def connector_state(self) -> str:
        """The upstream connector's session state (BOUND_TRX once bound)."""
        listing = self.jcli("smppccm -l")
        for line in listing.splitlines():
            fields = line.split()
            if fields and fields[0].lstrip("#") == CONNECTOR:
                return fields[2] if len(fields) > 2 else ""
        raise JasminError(f"jCli lists no connector {CONNECTOR}: {listing!r}")

    @contextlib.contextmanager
    def _jcli_session(self, timeout: float) -> Iterator[_JCli]:
        session = _JCli(HOST, self.ports["jcli"], timeout)
        try:
            session.login(JCLI_USERNAME, self._jcli_password)
            yield session
        finally:
            session.close()

    def _configure(
        self, host: str, port: int, upstream_system_id: str, upstream_password: str, system_id: str, password: str
    ) -> None:
        # Jasmin's user ids are [A-Za-z0-9_-]{1,16}; its usernames (the system_id) at most 15 of those.
        uid = re.sub(r"[^A-Za-z0-9_-]", "_", system_id)[:16] or "ivrauth"
        with self._jcli_session(10.0) as session:
            session.expect_ok("group -a", [f"gid {GROUP}"], "Successfully added Group")
            session.expect_ok(
                "user -a",
                [f"username {system_id}", f"password {password}", f"gid {GROUP}", f"uid {uid}"],
                "Successfully added User",
            )
            session.expect_ok(
                "smppccm -a",
                [
                    f"cid {CONNECTOR}",
                    f"host {host}",
                    f"port {port}",
                    f"username {upstream_system_id}",
                    f"password {upstream_password}",
                    "bind transceiver",
                    "submit_throughput 0",
                    # A lost upstream is retried after 2 s, not Jasmin's 10.
                    "con_loss_delay 2",
                    "con_fail_delay 2",
                ],
                "Successfully added connector",
            )
            session.expect_ok(
                "mtrouter -a",
                ["type defaultroute", "order 0", f"connector smppc({CONNECTOR})", "rate 0.00"],
                "Successfully added MTRoute",
            )
            answer = session.run(f"smppccm -1 {CONNECTOR}")
            if "Successfully started connector" not in answer:
                raise JasminError(f"jCli did not start connector {CONNECTOR}: {answer.strip()!r}")

    def _wait_bound(self, deadline: float) -> None:
        state = ""
        log = self.log_file(f"default-{CONNECTOR}")
        while time.monotonic() < deadline:
            state = self.connector_state()
            if state == "BOUND_TRX":
                return
            # A refused bind is not retried into success: wrong credentials stay wrong.
            refused = re.search(r"Bind failed .*?(ESME_\w+)", log.read_text(errors="replace") if log.exists() else "")
            if refused:
                raise JasminError(f"the upstream SMSC refused connector {CONNECTOR}'s bind with {refused.group(1)}")
            time.sleep(0.1)
        raise JasminError(f"connector {CONNECTOR} did not bind to the upstream SMSC (last state {state or 'none'})")

    # Processes

    def _spawn(self, name: str, argv: Sequence[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        home = self._require_home()
        with (home / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(
                list(argv),
                cwd=home,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                start_new_session=True,
            )
        self._processes[name] = process
        return process

    def _start_redis(self, deadline: float) -> None:
        home = self._require_home()
        binary = _which("redis-server")
        argv = [
            binary,
            "--bind",
            HOST,
            "--port",
            str(self.ports["redis"]),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(home),
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
        ]
        process = self._spawn("redis", argv, _base_env(home))
        _wait(deadline, process, "redis-server answers PING", lambda: _redis_ping(self.ports["redis"]))

    def _start_rabbitmq(self, deadline: float) -> None:
        home = self._require_home()
        if not RABBITMQ_SERVER.exists():
            raise errors.NotInstalled(f"{RABBITMQ_SERVER} is missing: run `make setup` (scripts/setup-jasmin.sh)")
        epmds = sorted(Path("/").glob(EPMD_GLOB.lstrip("/")))
        if not epmds:
            raise errors.NotInstalled("Erlang's epmd is missing: run `make setup` (scripts/setup-jasmin.sh)")
        rabbit = home / "rabbitmq"
        for sub in ("home", "mnesia", "log"):
            (rabbit / sub).mkdir(parents=True, exist_ok=True)
        (rabbit / "enabled_plugins").write_text("[].\n")
        (rabbit / "rabbitmq-env.conf").write_text("")
        (rabbit / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = {HOST}:{self.ports['amqp']}\nlog.console = false\nlog.file.level = info\n"
        )
        env = _base_env(rabbit / "home")
        # Erlang's port mapper of its own on loopback (and no other started):
        # the node's name is registered there, never in a system-wide epmd.
        env |= {"ERL_EPMD_ADDRESS": HOST, "ERL_EPMD_PORT": str(self.ports["epmd"])}
        epmd = self._spawn("epmd", [str(epmds[-1]), "-port", str(self.ports["epmd"]), "-address", HOST], env)
        _wait(deadline, epmd, "epmd listens", lambda: _listening(self.ports["epmd"]))
        env |= {
            "RABBITMQ_CONF_ENV_FILE": str(rabbit / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(rabbit / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(rabbit / "enabled_plugins"),
            "RABBITMQ_NODENAME": f"jasmin{self.ports['amqp']}@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": HOST,
            "RABBITMQ_NODE_PORT": str(self.ports["amqp"]),
            "RABBITMQ_DIST_PORT": str(self.ports["dist"]),
            "RABBITMQ_MNESIA_BASE": str(rabbit / "mnesia"),
            "RABBITMQ_LOG_BASE": str(rabbit / "log"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1} -start_epmd false",
        }
        process = self._spawn("rabbitmq", [str(RABBITMQ_SERVER)], env)
        _wait(deadline, process, "RabbitMQ answers AMQP", lambda: _amqp_answers(self.ports["amqp"]))

    def _start_jasmind(self, venv: Path, deadline: float) -> None:
        home = self._require_home()
        for sub in ("etc", "log", "store"):
            (home / sub).mkdir(exist_ok=True)
        values = {name: str(port) for name, port in self.ports.items()}
        config = CONFIG.format(
            host=HOST,
            jcli_username=JCLI_USERNAME,
            jcli_password_md5=hashlib.md5(self._jcli_password.encode()).hexdigest(),
            dlr_retry_delay=self.dlr_retry_delay,
            dlr_max_retries=self.dlr_max_retries,
            not_ready_retry_delay=self.not_ready_retry_delay,
            **values,
        )
        (home / "etc" / "jasmin.cfg").write_text(config)
        (home / "etc" / "launcher.py").write_text(LAUNCHER)
        # Jasmin reads <SECTION>_<OPTION> variables over its config file: it
        # gets a clean environment, with its paths pointed into the run directory.
        env = _base_env(home) | {
            "CONFIG_PATH": f"{home / 'etc'}/",
            "STORE_PATH": f"{home / 'store'}/",
            "LOG_PATH": str(home / "log"),
            "RESOURCE_PATH": f"{venv / 'etc' / 'resource'}/",
        }
        argv = [
            str(venv / "bin" / "python"),
            str(home / "etc" / "launcher.py"),
            str(venv / "bin" / "jasmind.py"),
            "--config",
            str(home / "etc" / "jasmin.cfg"),
            "--enable-dlr-lookup",
            "--enable-dlr-thrower",
            "--disable-http-api",
        ]
        process = self._spawn("jasmind", argv, env)
        _wait(deadline, process, "jCli answers", lambda: _jcli_greets(self.ports["jcli"]))
        log = (home / "jasmind.log").read_text(errors="replace")
        if "Cannot start" in log:
            raise JasminError(f"jasmind could not start a service:\n{proc.tail(home / 'jasmind.log')}")
        if not _listening(self.ports["smpp"]):
            raise JasminError("jasmind's SMPP server does not listen")

    def _require_home(self) -> Path:
        if self.home is None:
            raise JasminError("Jasmin is not started")
        return self.home

    def _step_log(self) -> Path | None:
        if self.home is None:
            return None
        names = {"redis": "redis", "rabbitmq": "rabbitmq", "jasmind": "jasmind"}
        if self._step in names:
            if self._step == "rabbitmq":
                logs = sorted((self.home / "rabbitmq" / "log").glob("*.log"))
                return logs[0] if logs else self.home / "rabbitmq.log"
            return self.log_file(names[self._step])
        if self._step == "connector bind":
            return self.log_file(f"default-{CONNECTOR}")
        return self.log_file("jcli")


class _JCli:
    """A jCli session: telnet-style lines, answers ending in a prompt."""

    PROMPTS = (b"jcli : ", b"> ")

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buffer = b""

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendall(b"quit\r\n")
        self.sock.close()

    def _read_until(self, *marks: bytes) -> str:
        deadline = time.monotonic() + self.timeout
        while not any(self.buffer.endswith(mark) for mark in marks):
            if time.monotonic() > deadline:
                raise JasminError(f"jCli did not answer within {self.timeout:.0f}s (got {self.buffer[-200:]!r})")
            chunk = self.sock.recv(65536)
            if not chunk:
                raise JasminError(f"jCli closed the connection (got {self.buffer[-200:]!r})")
            self.buffer += _strip_telnet(chunk)
        text, self.buffer = self.buffer.decode(errors="replace"), b""
        return text

    def login(self, username: str, password: str) -> None:
        # jCli asks for the username once a first line came in.
        self.sock.sendall(b"\r\n")
        self._read_until(b"Username: ")
        self.sock.sendall(username.encode() + b"\r\n")
        self._read_until(b"Password: ")
        self.sock.sendall(password.encode() + b"\r\n")
        answer = self._read_until(*self.PROMPTS, b"Username: ")
        if not answer.endswith(self.PROMPTS[0].decode()):
            raise JasminError("jCli refused its admin credentials")

    def run(self, line: str) -> str:
        self.sock.sendall(line.encode() + b"\r\n")
        return self._read_until(*self.PROMPTS)

    def expect_ok(self, command: str, lines: Sequence[str], success: str) -> None:
        """Run ``command``, its sub-mode ``lines`` and ``ok``; JasminError
        unless jCli's last answer says ``success``."""
        answers = [self.run(command)]
        for line in lines:
            answer = self.run(line)
            # jCli echoes each line: a password line's answer never goes into a message.
            answers.append("password (not shown)" if line.startswith("password ") else answer)
        answers.append(self.run("ok"))
        if success not in answers[-1]:
            shown = [line for line in lines if not line.startswith("password ")]
            raise JasminError(f"jCli `{command}` ({'; '.join(shown)}) failed: {' | '.join(a.strip() for a in answers)}")


def _strip_telnet(data: bytes) -> bytes:
    """Drop telnet negotiation (IAC sequences) from jCli's output."""
    out = bytearray()
    i = 0
    while i < len(data):
        if data[i] == 0xFF and i + 1 < len(data):
            i += 3 if data[i + 1] in (0xFB, 0xFC, 0xFD, 0xFE) else 2
            continue
        out.append(data[i])
        i += 1
    return bytes(out).replace(b"\r", b"")


def _base_env(home: Path) -> dict[str, str]:
    return {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": str(home), "LANG": "C.UTF-8"}


def _which(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if found is None:
        raise errors.NotInstalled(f"{name} is not installed: run `make setup` (scripts/setup-jasmin.sh)")
    return found


def _free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (all held open at once while picked)."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((HOST, 0))
            socks.append(sock)
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def _wait(deadline: float, process: subprocess.Popen[bytes], what: str, ready: Callable[[], bool]) -> None:
    while True:
        if ready():
            return
        if process.poll() is not None:
            raise JasminError(f"exited with status {process.returncode} before {what}")
        if time.monotonic() > deadline:
            raise JasminError(f"timed out waiting until {what}")
        time.sleep(0.05)


def _listening(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1.0):
            return True
    except OSError:
        return False


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _amqp_answers(port: int) -> bool:
    """The broker answers the AMQP 0-9-1 header with a method frame (connection.start)."""
    try:
        with socket.create_connection((HOST, port), timeout=1.0) as sock:
            sock.sendall(b"AMQP\x00\x00\x09\x01")
            return sock.recv(1) == b"\x01"
    except OSError:
        return False


def _jcli_greets(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1.0) as sock:
            data = b""
            while b"Authentication required" not in data:
                chunk = sock.recv(4096)
                if not chunk:
                    return False
                data += chunk
            return True
    except OSError:
        return False


def _terminate(process: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM to the process's session (RabbitMQ's script and its Erlang VM
    alike), SIGKILL to it when it is still there after ``timeout``."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            logger.warning("pid %s did not stop within %.0fs; killing it", process.pid, timeout)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(5.0)


def _stop_orphans(base_dir: Path) -> None:
    """Kill what a tier left running under ``base_dir`` when the process that
    started it is gone (a test run killed before its teardown). Every process
    of a tier runs in its run directory: that is how they are found."""
    for home in base_dir.glob("jasmin-*"):
        try:
            owner = int((home / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue
        if proc.alive(owner):
            continue
        for pid in _running_in(home.resolve()):
            logger.warning("killing pid %s, left running in %s by pid %s", pid, home, owner)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        (home / OWNER_FILE).unlink(missing_ok=True)


def _running_in(directory: Path) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if Path(os.readlink(entry / "cwd")) == directory:
                found.append(int(entry.name))
    return found
