"""The SMS gateway tier: an SMPP client (smpplib, independent of ivr_auth.sms)
bound to Jasmin 0.11.1 as transceiver, Jasmin bound to the npm test SMSC.

What the SMSC recorded is checked (text, data_coding, UDH parts, sender), and
the receipts that come back through Jasmin are matched to the message ids
Jasmin answered with. The behaviours pinned here are the ones listed in
ivr_auth_devkit.jasmin's docstring. Jasmin runs on its own free ports, not on
the test stack: no lock needed.
"""

from __future__ import annotations

import contextlib
import re
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import smpplib.client
import smpplib.exceptions

from ivr_auth_devkit import jasmin as jasmin_mod
from ivr_auth_devkit import smsc as smsc_mod

pytestmark = pytest.mark.e2e

UPSTREAM_SYSTEM_ID = "jasmin"
UPSTREAM_PASSWORD = "up-pw-7"
SYSTEM_ID = "ivr-auth"
PASSWORD = "esme-pw1"
SENDER = "IVRAUTH"
# Jasmin retries throwing a receipt to a client that is not bound every
# DLR_RETRY seconds (its default: 30), up to 3 times.
DLR_RETRY = 2
WAIT = 15.0

# Destination suffixes of the SMSC's rules.
REFUSED = "011"
UNDELIV = "901"
EXPIRED = "902"
REJECTD = "903"
SLOW = "904"
PHONE = "8190123450"


@dataclass(frozen=True)
class Receipt:
    receipted_message_id: str
    stat: str
    err: str
    message_state: int
    text: str


class Esme:
    """An SMPP client bound to Jasmin as transceiver; read only when pumped,
    so that each test decides how long it waits for what."""

    def __init__(self, port: int) -> None:
        self.client: Any = smpplib.client.Client("127.0.0.1", port, timeout=0.2, allow_unknown_opt_params=True)
        self.responses: dict[int, tuple[int, str]] = {}
        self.receipts: list[Receipt] = []
        self.client.set_message_sent_handler(self._sent)
        self.client.set_message_received_handler(self._received)
        # A submit_sm_resp with an error is recorded like any other.
        self.client.set_error_pdu_handler(lambda pdu: None)
        self.client.connect()
        self.client.bind_transceiver(system_id=SYSTEM_ID, password=PASSWORD)

    def _sent(self, pdu: Any) -> None:
        message_id = pdu.message_id.decode() if isinstance(pdu.message_id, bytes) else str(pdu.message_id or "")
        self.responses[pdu.sequence] = (int(pdu.status), message_id)

    def _received(self, pdu: Any) -> int:
        text = pdu.short_message.decode()
        fields = dict(re.findall(r"(\w+):(\S+)", text))
        receipted = pdu.receipted_message_id
        self.receipts.append(
            Receipt(
                receipted_message_id=receipted.decode() if isinstance(receipted, bytes) else str(receipted),
                stat=fields.get("stat", ""),
                err=fields.get("err", ""),
                message_state=int(pdu.message_state or 0),
                text=text,
            )
        )
        return 0

    def submit(
        self,
        destination: str,
        short_message: bytes,
        *,
        data_coding: int = 0,
        esm_class: int = 0,
        registered_delivery: int = 1,
    ) -> int:
        pdu = self.client.send_message(
            source_addr_ton=5,
            source_addr_npi=0,
            source_addr=SENDER,
            dest_addr_ton=1,
            dest_addr_npi=1,
            destination_addr=destination,
            short_message=short_message,
            data_coding=data_coding,
            esm_class=esm_class,
            registered_delivery=registered_delivery,
        )
        return int(pdu.sequence)

    def pump(self, until: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
        deadline = time.monotonic() + timeout
        while not until():
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} within {timeout:.0f}s (receipts: {self.receipts})")
            with contextlib.suppress(TimeoutError):
                self.client.read_once(auto_send_enquire_link=False)

    def accepted(self, *sequences: int) -> list[str]:
        """Jasmin's message ids for submits it answered with ESME_ROK."""
        self.pump(lambda: all(seq in self.responses for seq in sequences), "submit_sm_resp")
        answers = [self.responses[seq] for seq in sequences]
        assert [status for status, _ in answers] == [0] * len(sequences), answers
        return [message_id for _, message_id in answers]

    def receipt_for(self, message_id: str) -> Receipt:
        self.pump(lambda: any(r.receipted_message_id == message_id for r in self.receipts), f"receipt for {message_id}")
        return next(r for r in self.receipts if r.receipted_message_id == message_id)

    def drop(self) -> None:
        """Close the connection without an unbind, as a lost connection does."""
        self.client.disconnect()

    def close(self) -> None:
        if self.client.state != "CLOSED":
            with contextlib.suppress(OSError, smpplib.exceptions.PDUError, smpplib.exceptions.ConnectionError):
                self.client.unbind()
            self.client.disconnect()


@dataclass
class Tier:
    smsc: smsc_mod.Smsc
    jasmin: jasmin_mod.Jasmin

    def upstream(self, destination: str, count: int = 1) -> list[smsc_mod.Message]:
        """The SMSC's records for ``destination``, once there are ``count``."""
        deadline = time.monotonic() + WAIT
        while True:
            found = [m for m in self.smsc.messages() if m.destination_addr == destination]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"the SMSC recorded {len(found)} of {count} submits to {destination}")
            time.sleep(0.05)


@pytest.fixture(scope="module")
def tier(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tier]:
    base = tmp_path_factory.mktemp("jasmin-tier")
    smsc = smsc_mod.Smsc.start(base / "smsc", system_id=UPSTREAM_SYSTEM_ID, password=UPSTREAM_PASSWORD)
    gateway = jasmin_mod.Jasmin(base, dlr_retry_delay=DLR_RETRY, keep_dir=True)
    try:
        gateway.start(
            smsc.host, smsc.port, UPSTREAM_SYSTEM_ID, UPSTREAM_PASSWORD, system_id=SYSTEM_ID, password=PASSWORD
        )
        smsc.set_rules(
            {
                REFUSED: smsc_mod.Rule(submit_status=smsc_mod.ESME_RINVDSTADR),
                UNDELIV: smsc_mod.Rule(receipt="UNDELIV"),
                EXPIRED: smsc_mod.Rule(receipt="EXPIRED"),
                REJECTD: smsc_mod.Rule(receipt="REJECTD"),
                SLOW: smsc_mod.Rule(receipt_delay_ms=1500),
            }
        )
        yield Tier(smsc, gateway)
    finally:
        gateway.stop()
        smsc.stop()


@pytest.fixture
def esme(tier: Tier) -> Iterator[Esme]:
    client = Esme(tier.jasmin.port)
    try:
        yield client
    finally:
        client.close()


def ucs2_parts(text: str, reference: int) -> list[bytes]:
    """``text`` in UCS-2 as concatenated parts of 67 characters, each after a
    user data header (IEI 0x00, 8-bit reference)."""
    chunks = [text[i : i + 67] for i in range(0, len(text), 67)]
    return [
        bytes([5, 0, 3, reference, len(chunks), n]) + chunk.encode("utf-16-be")
        for n, chunk in enumerate(chunks, start=1)
    ]


def test_gsm_and_two_part_ucs2_texts_reach_the_smsc_and_their_receipts_come_back(tier: Tier, esme: Esme) -> None:
    english = "Your ivr-auth code is 482913. It expires in 5 minutes."
    japanese = (
        "【テスト】認証コードは482913です。このコードの有効期限は5分で"
        "す。他の人には絶対に教えないでください。お問い合わせはサポートまで。"
    )
    assert 67 < len(japanese) <= 134
    gsm_to, ja_to = PHONE + "001", PHONE + "002"

    gsm_seq = esme.submit(gsm_to, english.encode("ascii"))
    parts = ucs2_parts(japanese, reference=0x5A)
    part_seqs = [esme.submit(ja_to, part, data_coding=8, esm_class=0x40) for part in parts]
    gsm_id, *part_ids = esme.accepted(gsm_seq, *part_seqs)

    [gsm] = tier.upstream(gsm_to)
    assert (gsm.text, gsm.data_coding, gsm.udh) == (english, 0, None)
    assert (gsm.source_addr, gsm.source_addr_ton, gsm.source_addr_npi) == (SENDER, 5, 0)
    assert gsm.registered_delivery & 1
    upstream_parts = sorted(tier.upstream(ja_to, 2), key=lambda m: m.udh.sequence if m.udh else 0)
    assert [(m.data_coding, m.esm_class & 0x40, m.source_addr) for m in upstream_parts] == [(8, 0x40, SENDER)] * 2
    assert [m.udh for m in upstream_parts] == [
        smsc_mod.Concat(iei=0, reference=0x5A, total=2, sequence=1),
        smsc_mod.Concat(iei=0, reference=0x5A, total=2, sequence=2),
    ]
    assert "".join(m.text or "" for m in upstream_parts) == japanese

    # Jasmin answers with ids of its own (not the SMSC's), and its receipts carry them.
    upstream_ids = {m.message_id for m in (gsm, *upstream_parts)}
    for message_id in (gsm_id, *part_ids):
        receipt = esme.receipt_for(message_id)
        assert (receipt.stat, receipt.message_state) == ("DELIVRD", 2), receipt
        assert receipt.text.startswith(f"id:{message_id} "), receipt
        assert message_id not in upstream_ids


@pytest.mark.parametrize(
    ("suffix", "stat", "state"),
    [(UNDELIV, "UNDELIV", 5), (EXPIRED, "EXPIRED", 3), (REJECTD, "REJECTD", 8)],
)
def test_failed_delivery_receipts_pass_through(tier: Tier, esme: Esme, suffix: str, stat: str, state: int) -> None:
    [message_id] = esme.accepted(esme.submit(PHONE + suffix, b"code 482913"))
    receipt = esme.receipt_for(message_id)
    assert (receipt.stat, receipt.message_state) == (stat, state), receipt


def test_an_upstream_refusal_is_accepted_and_told_only_to_a_client_asking_for_failure_receipts(
    tier: Tier, esme: Esme
) -> None:
    # registered_delivery 1 (a receipt whatever the outcome): Jasmin answers
    # ESME_ROK at once, the SMSC refuses with 0x0B, and no receipt ever comes.
    to = PHONE + "1" + REFUSED
    [silent_id] = esme.accepted(esme.submit(to, b"code 482913", registered_delivery=1))
    [refusal] = tier.upstream(to)
    assert (refusal.command_status, refusal.message_id) == (smsc_mod.ESME_RINVDSTADR, None)
    # A message after it, whose receipt comes back: the refusal's would have come by then.
    [after_id] = esme.accepted(esme.submit(PHONE + "003", b"code 482913"))
    esme.receipt_for(after_id)
    # registered_delivery 2 (on failure only): the refusal comes back as UNDELIV.
    to = PHONE + "2" + REFUSED
    [told_id] = esme.accepted(esme.submit(to, b"code 482913", registered_delivery=2))
    receipt = esme.receipt_for(told_id)
    assert (receipt.stat, receipt.message_state) == ("UNDELIV", 5), receipt
    assert [r for r in esme.receipts if r.receipted_message_id == silent_id] == []


def test_a_receipt_reaches_the_client_after_its_connection_dropped_and_it_bound_again(tier: Tier) -> None:
    # Dropped before the receipt came to Jasmin, bound again before it came: the new session gets it.
    first = Esme(tier.jasmin.port)
    [early_id] = first.accepted(first.submit(PHONE + "1" + SLOW, b"code 482913"))
    first.drop()
    second = Esme(tier.jasmin.port)
    try:
        receipt = second.receipt_for(early_id)
        assert receipt.stat == "DELIVRD", receipt
        assert not _thrown_unbound(tier, early_id)
    finally:
        second.close()

    # Dropped, and the receipt came to Jasmin while no session of the client
    # was bound: Jasmin throws it again DLR_RETRY seconds later, to the client bound then.
    third = Esme(tier.jasmin.port)
    to = PHONE + "2" + SLOW
    [late_id] = third.accepted(third.submit(to, b"code 482913"))
    third.drop()
    deadline = time.monotonic() + WAIT
    while not _thrown_unbound(tier, late_id):
        assert time.monotonic() < deadline, "Jasmin did not try to throw the receipt while the client was away"
        time.sleep(0.05)
    fourth = Esme(tier.jasmin.port)
    try:
        receipt = fourth.receipt_for(late_id)
        assert receipt.stat == "DELIVRD", receipt
    finally:
        fourth.close()


def _thrown_unbound(tier: Tier, message_id: str) -> bool:
    """Has Jasmin's DLR thrower found no session of the client bound for the receipt of ``message_id``?"""
    log = tier.jasmin.log_file("dlr-thrower")
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    return any(message_id in line and "SystemIdNotBound" in line for line in lines)


def test_the_tier_runs_in_its_own_directory_on_loopback(tier: Tier) -> None:
    home = tier.jasmin.home
    assert home is not None
    assert tier.jasmin.connector_state() == "BOUND_TRX"
    listening = _listening_ports()
    for name, port in tier.jasmin.ports.items():
        if name == "http":  # the HTTP API is off
            continue
        assert listening.get(port, set()) <= {"127.0.0.1", "::1"}, (name, port, listening.get(port))
    assert Path(home, "rabbitmq", "mnesia").is_dir()


def _listening_ports() -> dict[int, set[str]]:
    """Listening TCP ports and the addresses they are bound on, from /proc."""
    found: dict[int, set[str]] = {}
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state = fields[1], fields[3]
            if state != "0A":
                continue
            address, port = local.split(":")
            raw = bytes.fromhex(address)
            # /proc prints each 32-bit word in host (little-endian) order.
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.setdefault(int(port, 16), set()).add(socket.inet_ntop(family, raw))
    return found


def test_a_refused_upstream_bind_fails_the_start_naming_the_step_and_its_log(
    tier: Tier, tmp_path_factory: pytest.TempPathFactory
) -> None:
    gateway = jasmin_mod.Jasmin(tmp_path_factory.mktemp("jasmin-refused"))
    with pytest.raises(jasmin_mod.JasminError) as failed:
        gateway.start(
            tier.smsc.host, tier.smsc.port, UPSTREAM_SYSTEM_ID, "wrong-pw", system_id=SYSTEM_ID, password=PASSWORD
        )
    message = str(failed.value)
    assert "connector bind step failed" in message
    assert "ESME_RBINDFAIL" in message
    log = gateway.log_file(f"default-{jasmin_mod.CONNECTOR}")
    assert f"its log is {log}" in message
    # Kept for reading, with every process of the failed start stopped.
    assert "Bind failed" in log.read_text()
    assert gateway.ports
    assert not any(_listening_ports().get(port) for port in gateway.ports.values())
    assert "wrong-pw" not in message
