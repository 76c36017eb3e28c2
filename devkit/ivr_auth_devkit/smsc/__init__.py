"""The development kit's test SMSC: the npm ``smpp`` package (0.5.1) run as an
SMPP 3.4 server by ``server.js`` beside this file, on loopback. It records
every submit_sm, answers with a fresh message_id, sends delivery receipts as
the destination's rule says, and is steered over an HTTP control port.

The API is synchronous (a few loopback requests); asyncio callers run it with
``asyncio.to_thread``. The process is started in a session of its own and
keeps running after the Python process that started it ends (the stack's
SMSC outlives ``ivr-auth-dev stack up``); its pid and ports are kept in
``<home>/smsc.json`` for ``attach`` and ``stop``.

``make setup`` (scripts/setup-smsc.sh) installs the npm package with
``npm ci`` into /var/lib/ivr-auth-dev/smsc (``IVR_AUTH_SMSC_DIR``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from ivr_auth import errors
from ivr_auth_devkit.stack import proc

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
SERVER = HERE / "server.js"
LOCK_FILE = HERE / "package-lock.json"
DEFAULT_DIR = Path("/var/lib/ivr-auth-dev/smsc")
DIR_ENV = "IVR_AUTH_SMSC_DIR"
HOST = "127.0.0.1"

Receipt = Literal["DELIVRD", "UNDELIV", "EXPIRED", "REJECTD", "none"]

# command_status values a rule may answer a submit_sm with (SMPP 3.4, 5.1.3).
ESME_ROK = 0x00
ESME_RINVSRCADR = 0x0A
ESME_RINVDSTADR = 0x0B
ESME_RMSGQFUL = 0x14
ESME_RSUBMITFAIL = 0x45
ESME_RTHROTTLED = 0x58


@dataclasses.dataclass(frozen=True)
class Rule:
    """What the SMSC does with a message to a destination: the submit_sm's
    command_status (0: accepted), then the receipt's stat after a delay
    ("none": no receipt ever)."""

    submit_status: int = ESME_ROK
    receipt: Receipt = "DELIVRD"
    receipt_delay_ms: int = 100


@dataclasses.dataclass(frozen=True)
class Concat:
    """A concatenated part's user data header (IEI 0x00: 8-bit reference, 0x08: 16-bit)."""

    iei: int
    reference: int
    total: int
    sequence: int


@dataclasses.dataclass(frozen=True)
class Message:
    """One submit_sm (or data_sm) as the SMSC received and answered it."""

    time: datetime
    command: str
    session: int
    system_id: str
    service_type: str
    source_addr: str
    source_addr_ton: int
    source_addr_npi: int
    destination_addr: str
    dest_addr_ton: int
    dest_addr_npi: int
    data_coding: int
    esm_class: int
    registered_delivery: int
    validity_period: str
    short_message: bytes
    message_payload: bytes | None
    udh: Concat | None
    # The text after the user data header, decoded by data_coding (GSM 03.38
    # for 0, ASCII for 1, Latin-1 for 3, UCS-2 for 8); None for others.
    text: str | None
    # None when the submit was refused (command_status not 0).
    message_id: str | None
    command_status: int

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Message:
        udh = raw.get("udh")
        payload = raw.get("message_payload_hex")
        return cls(
            time=datetime.fromisoformat(raw["time"]),
            command=raw["command"],
            session=raw["session"],
            system_id=raw["system_id"],
            service_type=raw["service_type"],
            source_addr=raw["source_addr"],
            source_addr_ton=raw["source_addr_ton"],
            source_addr_npi=raw["source_addr_npi"],
            destination_addr=raw["destination_addr"],
            dest_addr_ton=raw["dest_addr_ton"],
            dest_addr_npi=raw["dest_addr_npi"],
            data_coding=raw["data_coding"],
            esm_class=raw["esm_class"],
            registered_delivery=raw["registered_delivery"],
            validity_period=raw["validity_period"],
            short_message=bytes.fromhex(raw["short_message_hex"]),
            message_payload=None if payload is None else bytes.fromhex(payload),
            udh=None if udh is None else Concat(udh["iei"], udh["reference"], udh["total"], udh["sequence"]),
            text=raw["text"],
            message_id=raw["message_id"],
            command_status=raw["command_status"],
        )


@dataclasses.dataclass(frozen=True)
class SentReceipt:
    """A delivery receipt (deliver_sm) the SMSC sent, and the ESME's answer."""

    time: datetime
    session: int
    message_id: str
    stat: str
    text: str
    # The deliver_sm_resp's command_status; None while unanswered.
    response_status: int | None


@dataclasses.dataclass(frozen=True)
class Session:
    """A bound SMPP session."""

    id: int
    peer: str
    system_id: str
    bind_type: Literal["transceiver", "transmitter", "receiver"]
    enquire_links: int
    submits: int
    connected_at: datetime
    bound_at: datetime


def node_modules() -> Path:
    """The installed ``smpp`` package's node_modules; NotInstalled naming
    ``make setup`` when it is missing or older than the lock file."""
    base = Path(os.environ.get(DIR_ENV) or DEFAULT_DIR)
    modules = base / "node_modules"
    if not (modules / "smpp" / "package.json").exists():
        raise errors.NotInstalled(f"the test SMSC's npm package is not installed in {base}: run `make setup`")
    stamp = base / "package-lock.sha256"
    want = hashlib.sha256(LOCK_FILE.read_bytes()).hexdigest()
    try:
        have = stamp.read_text().strip()
    except OSError:
        have = ""
    if have != want:
        raise errors.NotInstalled(
            f"the test SMSC's npm packages in {base} are not those of {LOCK_FILE.name}: run `make setup`"
        )
    return modules


def node_binary() -> str:
    found = shutil.which("node")
    if found is None:
        raise errors.NotInstalled("node is not installed (the test SMSC runs on Node.js): run `make setup`")
    return found


class Smsc:
    """A running test SMSC: its SMPP port and its control port."""

    def __init__(self, home: Path, pid: int, port: int, control_port: int) -> None:
        self.home = home
        self.pid = pid
        self.port = port
        self.control_port = control_port

    def __repr__(self) -> str:
        return f"Smsc(pid={self.pid}, port={self.port}, control_port={self.control_port})"

    @property
    def host(self) -> str:
        return HOST

    @property
    def control_url(self) -> str:
        return f"http://{HOST}:{self.control_port}"

    @staticmethod
    def state_file(home: Path) -> Path:
        return home / "smsc.json"

    @staticmethod
    def log_file(home: Path) -> Path:
        return home / "smsc.log"

    @staticmethod
    def record_file(home: Path) -> Path:
        """The records, one JSON line per submit (emptied by ``reset``)."""
        return home / "messages.jsonl"

    @classmethod
    def start(
        cls,
        home: Path,
        *,
        system_id: str,
        password: str,
        port: int = 0,
        control_port: int = 0,
        timeout: float = 15.0,
    ) -> Smsc:
        """Start an SMSC that accepts binds with ``system_id``/``password``
        (ports 0: free ones) and wait until both ports listen."""
        modules = node_modules()
        node = node_binary()
        setsid = shutil.which("setsid")
        if setsid is None:
            raise errors.NotInstalled("setsid (util-linux) is not installed; it detaches the test SMSC")
        home.mkdir(parents=True, exist_ok=True)
        log_path = cls.log_file(home)
        env = {**os.environ, "NODE_PATH": str(modules), "SMSC_PASSWORD": password}
        argv = [node, str(SERVER), str(port), str(control_port), system_id, "-", str(cls.record_file(home))]
        # setsid --fork: the SMSC is nobody's child here, so it outlives this
        # process (the stack's) and no Popen is left behind unreaped.
        with log_path.open("wb") as log:
            subprocess.run(
                [setsid, "--fork", *argv], stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, check=True
            )
        deadline = time.monotonic() + timeout
        while True:
            started = _listening(log_path)
            if started is not None:
                break
            if _failed(log_path):
                raise errors.StackError(f"the test SMSC did not start; its log {log_path}:\n{proc.tail(log_path)}")
            if time.monotonic() > deadline:
                raise errors.StackError(
                    f"the test SMSC did not listen within {timeout:.0f}s; its log {log_path}:\n{proc.tail(log_path)}"
                )
            time.sleep(0.05)
        pid, smpp_port, control = started
        smsc = cls(home, pid, smpp_port, control)
        cls.state_file(home).write_text(json.dumps({"pid": pid, "port": smpp_port, "control_port": control}))
        logger.info("test SMSC up: SMPP %s:%s, control %s", HOST, smsc.port, smsc.control_url)
        return smsc

    @classmethod
    def attach(cls, home: Path) -> Smsc | None:
        """The SMSC started from ``home`` when it still runs and answers; else None."""
        try:
            state = json.loads(cls.state_file(home).read_text())
            smsc = cls(home, int(state["pid"]), int(state["port"]), int(state["control_port"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not proc.alive(smsc.pid):
            return None
        try:
            health = smsc._request("GET", "/health", timeout=2.0)
        except errors.StackError:
            return None
        if not isinstance(health, dict) or health.get("pid") != smsc.pid:
            return None
        return smsc

    def is_running(self) -> bool:
        return proc.alive(self.pid)

    def stop(self, timeout: float = 5.0) -> None:
        if proc.alive(self.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while proc.alive(self.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if proc.alive(self.pid):
                logger.warning("test SMSC pid %s did not stop; killing it", self.pid)
                os.kill(self.pid, signal.SIGKILL)
        self.state_file(self.home).unlink(missing_ok=True)

    # The control port.

    def messages(self) -> list[Message]:
        """Every submit_sm and data_sm since the start or the last ``reset``, in order."""
        return [Message.from_json(raw) for raw in self._list("GET", "/messages")]

    def receipts(self) -> list[SentReceipt]:
        out = []
        for raw in self._list("GET", "/receipts"):
            out.append(
                SentReceipt(
                    time=datetime.fromisoformat(raw["time"]),
                    session=raw["session"],
                    message_id=raw["message_id"],
                    stat=raw["stat"],
                    text=raw["text"],
                    response_status=raw["response_status"],
                )
            )
        return out

    def sessions(self) -> list[Session]:
        """The bound sessions."""
        return [
            Session(
                id=raw["id"],
                peer=raw["peer"],
                system_id=raw["system_id"],
                bind_type=raw["bind_type"],
                enquire_links=raw["enquire_links"],
                submits=raw["submits"],
                connected_at=datetime.fromisoformat(raw["connected_at"]),
                bound_at=datetime.fromisoformat(raw["bound_at"]),
            )
            for raw in self._list("GET", "/sessions")
        ]

    def refused(self) -> list[datetime]:
        """When connections were closed unanswered under ``refuse_binds``."""
        answer = self._request("GET", "/refused")
        if not isinstance(answer, list):
            raise errors.StackError(f"test SMSC /refused: expected a list, got {answer!r}")
        return [datetime.fromisoformat(str(raw)) for raw in answer]

    def set_rules(self, rules: Mapping[str, Rule]) -> None:
        """Replace the rules: each applies to destinations ending in its digits,
        the longest suffix winning ("" matches all); others get ``Rule()``."""
        self._request("POST", "/rules", {suffix: dataclasses.asdict(rule) for suffix, rule in rules.items()})

    def reset(self) -> None:
        """Forget the records, receipts and rules, and take connections again."""
        self._request("POST", "/reset", {})

    def drop_connections(self) -> int:
        """Destroy every SMPP socket at once, as a lost connection does; how many."""
        answer = self._request("POST", "/drop", {})
        return int(answer["dropped"]) if isinstance(answer, dict) else 0

    def refuse_binds(self, seconds: float) -> None:
        """Close new connections unanswered for ``seconds``."""
        self._request("POST", "/refuse-binds", {"seconds": seconds})

    def _list(self, method: str, path: str) -> list[dict[str, Any]]:
        answer = self._request(method, path)
        if not isinstance(answer, list):
            raise errors.StackError(f"test SMSC {path}: expected a list, got {answer!r}")
        return answer

    def _request(self, method: str, path: str, body: Any = None, timeout: float = 10.0) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.control_url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise errors.StackError(f"test SMSC {method} {path}: HTTP {exc.code} {detail}") from exc
        except (OSError, ValueError) as exc:
            raise errors.StackError(f"test SMSC {method} {path} at {self.control_url}: {exc}") from exc


def _listening(log_path: Path) -> tuple[int, int, int] | None:
    """(pid, SMPP port, control port) once the server said it listens."""
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("listening "):
            fields = dict(part.split("=", 1) for part in line.split()[1:])
            return int(fields["pid"]), int(fields["smpp"]), int(fields["control"])
    return None


def _failed(log_path: Path) -> bool:
    """The server said why it stopped (its own ``smsc:`` lines, or Node's error)."""
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return False
    return any(line.startswith("smsc: ") or "Error" in line for line in text.splitlines())
