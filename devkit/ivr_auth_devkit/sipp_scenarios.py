"""SIPp scenarios written per run: a phone that keys a code needs the code
in its scenario (SIPp's ``play_dtmf`` uses payload type 96, which Asterisk
does not hear as the offerer, so keys are sent as RFC 2833 pcaps from
``rtp_pcap``, or as SIP INFO), so its scenario is filled in from a
``.xml.in`` template in ``sipp-scenarios/``. Key sequences and their ","
pauses are as ``rtp_pcap.presses()`` reads them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal
from xml.sax.saxutils import escape

from ivr_auth_devkit import rtp_pcap

# The development kit runs from a checkout: the scenarios are beside it.
SCENARIO_DIR = Path(__file__).resolve().parents[2] / "sipp-scenarios"
# How long a key sent as SIP INFO is held (the body's Duration).
INFO_DURATION_MS = 160
# The final answers a refused Caller accepts (SIPp matches a response by its
# exact code only); any other still shows in final_status, as a failed call.
REJECT_CODES = (
    400, 401, 402, 403, 404, 405, 406, 407, 408, 410, 413, 414, 415, 416, 420, 421, 423, 480, 481, 482, 483,
    484, 485, 486, 487, 488, 491, 493, 500, 501, 502, 503, 504, 505, 513, 600, 603, 604, 606,
)  # fmt: skip
DEFAULT_GREETING_SILENCE_MS = 4000
ANONYMOUS_FROM = '"Anonymous" <sip:anonymous@anonymous.invalid>'

Dtmf = Literal["rfc2833", "info"]
Expect = Literal["answer", "reject"]


def _template(name: str) -> str:
    """A template with its header comment (which names the placeholders)
    replaced by where the scenario came from."""
    text = (SCENARIO_DIR / name).read_text()
    start = text.index("<!--")
    end = text.index("-->", start) + 3
    origin = f"written by devkit/ivr_auth_devkit/sipp_scenarios.py from sipp-scenarios/{name}"
    return f"{text[:start]}<!-- {origin} -->{text[end:]}"


def _attr(value: str) -> str:
    return escape(value, {'"': "&quot;"})


def _fill(text: str, **values: object) -> str:
    for name, value in values.items():
        text = text.replace(f"@{name}@", str(value))
    if leftover := re.findall(r"@[A-Z_]+@", text):
        raise ValueError(f"scenario template left unfilled: {sorted(set(leftover))}")
    return text


def _block(text: str, name: str) -> tuple[str, str, str]:
    """Split a template around its ``<!-- @NAME@ -->`` ... ``<!-- @END_NAME@ -->``
    block: (before, the block, after)."""
    begin, end = f"  <!-- @{name}@ -->\n", f"  <!-- @END_{name}@ -->\n"
    head, _, rest = text.partition(begin)
    block, found, tail = rest.partition(end)
    if not found:
        raise ValueError(f"scenario template has no @{name}@ block")
    return head, block, tail


def _play(pcap_path: Path) -> str:
    return f'  <nop><action><exec play_pcap_audio="{_attr(str(pcap_path))}"/></action></nop>'


def _rfc2833_steps(keys: str, pcap_path: Path | None, first_key_ms: int, key_gap_ms: int) -> str:
    plan = rtp_pcap.presses(keys, key_gap_ms=key_gap_ms)
    if not plan:
        return ""
    if pcap_path is None:
        raise ValueError("keys need a pcap to play")
    wait = _sipp_timeout(first_key_ms + plan[0].wait_ms)
    return "\n".join(
        [
            # A BYE while waiting to key (the far end gave up) still ends the call cleanly.
            f'  <recv request="BYE" timeout="{wait}" ontimeout="keys" next="bye"/>',
            '  <label id="keys"/>',
            _play(pcap_path),
        ]
    )


def _sipp_timeout(ms: int) -> int:
    """A receive timeout for SIPp: it reads 0 as "none", which would wait for
    ever instead of keying at once (a phone keying as soon as it answers)."""
    return max(ms, 1)


def _info_steps(keys: str, first_key_ms: int, key_gap_ms: int) -> str:
    _, block, _ = _block(_template("uas-dtmf-info.xml.in"), "EACH_KEY")
    return "".join(
        _fill(
            block,
            INDEX=index,
            WAIT_MS=press.wait_ms + (first_key_ms if index == 1 else 0),
            SIGNAL=press.key,
            DURATION_MS=INFO_DURATION_MS,
        )
        for index, press in enumerate(rtp_pcap.presses(keys, key_gap_ms=key_gap_ms), start=1)
    )


def _hangup_wait_ms(hangup_after_ms: int, keys: str, key_gap_ms: int, played_ms: int) -> int:
    """How long after the keys start (after the answer without keys) a phone
    waits before it hangs up: ``played_ms`` is how long its pcap plays on
    while the scenario moves on."""
    return _sipp_timeout(hangup_after_ms + rtp_pcap.trailing_pause_ms(keys) + played_ms)


def handset_scenario(
    keys: str,
    pcap_path: Path | None,
    *,
    ring_ms: int = 300,
    first_key_ms: int = 1500,
    key_gap_ms: int = 300,
    hangup_after_ms: int | None = None,
    dtmf: Dtmf = "rfc2833",
    greeting_ms: int | None = None,
    greeting_silence_ms: int = DEFAULT_GREETING_SILENCE_MS,
) -> str:
    """A UAS scenario that answers and keys ``keys``, ``first_key_ms`` after
    answering: as RFC 2833 events by playing ``pcap_path`` (from
    ``rtp_pcap.dtmf_pcap(keys)``), or as SIP INFO requests; silent without
    keys. With ``greeting_ms`` it instead plays ``pcap_path`` (from
    ``rtp_pcap.audio_pcap(greeting_ms, greeting_silence_ms, keys=keys)``) as
    soon as it has answered, and the keys come after the greeting's silence.
    It waits for the far end to hang up, or with ``hangup_after_ms`` hangs up
    itself that long after its last key (after answering when it has none)."""
    if greeting_ms is not None:
        if dtmf != "rfc2833":
            raise ValueError("a greeting's keys are RFC 2833 events in the same stream")
        if pcap_path is None:
            raise ValueError("a greeting needs a pcap to play")
        steps = _play(pcap_path)
        played_ms = rtp_pcap.audio_pcap_ms(greeting_ms, greeting_silence_ms, keys, key_gap_ms=key_gap_ms)
    elif dtmf == "info":
        steps = _info_steps(keys, first_key_ms, key_gap_ms)
        played_ms = 0
    else:
        steps = _rfc2833_steps(keys, pcap_path, first_key_ms, key_gap_ms)
        played_ms = rtp_pcap.keying_ms(keys, key_gap_ms=key_gap_ms)
    if hangup_after_ms is not None:
        wait = _hangup_wait_ms(hangup_after_ms, keys, key_gap_ms, played_ms)
        return _fill(_template("uas-answer-hangup.xml.in"), RING_MS=ring_ms, KEYS=steps, HANGUP_WAIT_MS=wait)
    if dtmf == "info":
        head, _, tail = _block(_template("uas-dtmf-info.xml.in"), "EACH_KEY")
        return _fill(head + steps + tail, RING_MS=ring_ms)
    return _fill(_template("uas-answer-keys.xml.in"), RING_MS=ring_ms, KEYS=steps)


def by_number_scenario(pcaps: Mapping[str, Path], *, ring_ms: int = 300, first_key_ms: int = 1500) -> str:
    """A UAS scenario for many calls at once that plays, on each call, the
    pcap of the number dialled (the Request-URI's user part)."""
    head, block, tail = _block(_template("uas-answer-by-number.xml.in"), "EACH_NUMBER")
    blocks = "".join(
        _fill(block, INDEX=index, NUMBER=_attr(number), PCAP=_attr(str(pcap)))
        for index, (number, pcap) in enumerate(pcaps.items(), start=1)
    )
    return _fill(head + blocks + tail, RING_MS=ring_ms, FIRST_KEY_MS=_sipp_timeout(first_key_ms))


_SIP_USER = re.compile(r"[0-9A-Za-z+*#._-]+")


def _sip_user(value: str, what: str) -> str:
    if not _SIP_USER.fullmatch(value):
        raise ValueError(f"{what}: {value!r} is not a number or SIP user name")
    return value


def withheld(caller: str) -> bool:
    return caller in ("", "anonymous")


def caller_scenario(
    did: str,
    caller: str,
    *,
    pai: str | None = None,
    expect: Expect = "answer",
    keys: str = "",
    pcap_path: Path | None = None,
    first_key_ms: int = 1500,
    key_gap_ms: int = 300,
    hangup_after_ms: int | None = None,
) -> str:
    """A UAC scenario that calls ``did`` from ``caller`` (withheld when ""
    or "anonymous"), with a P-Asserted-Identity of ``pai`` when given.
    ``expect="answer"``: the call is answered, ``keys`` are keyed as in
    ``handset_scenario()`` and it waits for the far end to hang up, or hangs
    up itself ``hangup_after_ms`` after its last key. ``expect="reject"``: a
    final answer of ``REJECT_CODES`` comes, and is ACKed."""
    _sip_user(did, "did")
    if withheld(caller):
        from_ = ANONYMOUS_FROM
        contact_user = "anonymous"
    else:
        from_ = f"<sip:{_sip_user(caller, 'caller')}@[local_ip]:[local_port]>"
        contact_user = caller
    extra = f"P-Asserted-Identity: <sip:{_sip_user(pai, 'pai')}@[local_ip]>\n" if pai else ""
    names = {"DID": did, "FROM": from_, "CONTACT_USER": contact_user}
    if expect == "reject":
        if keys or hangup_after_ms is not None:
            raise ValueError("a refused call cannot key or hang up")
        head, block, tail = _block(_template("uac-reject.xml.in"), "EACH_CODE")
        blocks = "".join(
            _fill(block, CODE=code, OPTIONAL=str(code != REJECT_CODES[-1]).lower()) for code in REJECT_CODES
        )
        return _fill((head + blocks + tail).replace("@EXTRA_HEADERS@\n", extra), **names)
    if expect != "answer":
        raise ValueError(f"expect: {expect!r} is not 'answer' or 'reject'")
    steps = _rfc2833_steps(keys, pcap_path, first_key_ms, key_gap_ms)
    if hangup_after_ms is not None:
        wait = _hangup_wait_ms(hangup_after_ms, keys, key_gap_ms, rtp_pcap.keying_ms(keys, key_gap_ms=key_gap_ms))
        text = _template("uac-answer-hangup.xml.in").replace("@EXTRA_HEADERS@\n", extra)
        return _fill(text, KEYS=steps, HANGUP_WAIT_MS=wait, **names)
    return _fill(_template("uac-answer.xml.in").replace("@EXTRA_HEADERS@\n", extra), KEYS=steps, **names)
