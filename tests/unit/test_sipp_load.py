"""The load phones' injection files, message-trace parsing and key pcaps."""

from __future__ import annotations

import struct

import pytest

from ivr_auth_devkit import rtp_pcap, sipp_load, sipp_scenarios

Row = sipp_load.HandsetRow


def test_codes_csv_has_one_row_per_number_in_the_scenarios_layout() -> None:
    text = sipp_load.codes_csv([Row("+819055550001", "123456#"), Row("+819055550002", behaviour="busy")])
    assert text.splitlines() == [
        "SEQUENTIAL",
        "+819055550001;123456#;keys;1500;300;1",
        "+819055550002;;busy;1500;300;1",
    ]
    with pytest.raises(ValueError, match="one row per number"):
        sipp_load.codes_csv([Row("+819055550001", "1"), Row("+819055550001", "2")])


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"keys": "12a"}, "only 0-9"),
        ({"keys": ""}, "needs keys"),
        ({"keys": "1", "rounds": 0}, "needs keys"),
        ({"keys": "1", "gap_ms": 100}, "gap_ms"),
        ({"behaviour": "loud"}, "behaviour"),
    ],
)
def test_rows_refuse_what_the_scenario_cannot_do(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Row("+819055550001", **fields)  # type: ignore[arg-type]


def test_callers_csv_rows_are_caller_then_number() -> None:
    text = sipp_load.callers_csv([("09012340001", "05012345678")])
    assert text == "SEQUENTIAL\n09012340001;05012345678\n"
    with pytest.raises(ValueError, match="caller"):
        sipp_load.callers_csv([("090 1234", "05012345678")])


def test_received_invites_reads_the_number_and_time_of_each_invite() -> None:
    trace = (
        "----------------------------------------------- 2026-11-23 21:45:00.878103\n"
        "UDP message received [533] bytes :\n\n"
        "INVITE sip:+819055550005@127.0.0.1:15990 SIP/2.0\nCSeq: 1 INVITE\n\n"
        "----------------------------------------------- 2026-11-23 21:45:00.879000\n"
        "UDP message sent (400 bytes):\n\nSIP/2.0 180 Ringing\n\n"
        "----------------------------------------------- 2026-11-23 21:45:01.000001\n"
        "UDP message received [40] bytes :\n\nACK sip:x@127.0.0.1 SIP/2.0\n\n"
    )
    ((number, at),) = sipp_load.received_invites(trace)
    assert number == "+819055550005"
    assert (at.hour, at.minute, at.microsecond) == (21, 45, 878103)


def test_each_key_pcap_is_sipps_own_with_an_ssrc_and_numbers_of_its_own() -> None:
    ssrcs = set()
    for key in sipp_load.KEY_NAMES:
        stock = rtp_pcap.read_pcap(rtp_pcap.pcap_for(key).read_bytes())
        for variant in sipp_load.VARIANTS:
            shipped = sipp_scenarios.SCENARIO_DIR / "pcap" / sipp_load.key_pcap_name(key, variant)
            assert shipped.read_bytes() == sipp_load.key_pcap(key, variant), f"{shipped} is stale"
            packets = rtp_pcap.read_pcap(shipped.read_bytes())
            assert [p[rtp_pcap.RTP_OFFSET + 12 :] for _, p in packets] == [
                p[rtp_pcap.RTP_OFFSET + 12 :] for _, p in stock
            ]  # the same events
            ssrcs.add(struct.unpack_from("!I", packets[0][1], rtp_pcap.RTP_OFFSET + 8)[0])
    assert len(ssrcs) == len(sipp_load.KEY_NAMES) * len(sipp_load.VARIANTS)
