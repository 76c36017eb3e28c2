"""pjsip.conf with several trunks: one endpoint, aor, identify (and auth) each."""

from __future__ import annotations

from pathlib import Path

from ivr_auth import config, trunks
from ivr_auth_devkit.stack import asterisk
from tests.unit.test_stack_render import asterisk_sections, render_all, section

TRUNKS = [
    {"name": "primary", "host": "192.0.2.10", "port": 5085, "priority": 1},
    {
        "name": "backup",
        "host": "192.0.2.20",
        "port": 5086,
        "transport": "tcp",
        "trusted": True,
        "username": "acct",
        "password": "pw",
        "priority": 2,
    },
]


def test_every_trunk_gets_its_sections(tmp_path: Path) -> None:
    cfg = config.from_mapping({"trunks": TRUNKS, "trunk": {"name": "unused", "host": "192.0.2.99"}})

    text = render_all(cfg, tmp_path)["ivr-auth-pjsip.conf"]
    pjsip = asterisk_sections(text)

    primary = section(pjsip, "primary", "endpoint")
    assert (primary["context"], primary["trust_id_inbound"]) == ("ivr-auth-inbound", "no")
    assert primary["transport"] == "transport-udp"
    assert section(pjsip, "backup", "endpoint")["transport"] == "transport-tcp"
    assert "outbound_auth" not in primary
    assert section(pjsip, "primary", "aor")["contact"] == "sip:192.0.2.10:5085"
    assert section(pjsip, "primary", "identify") == {"type": "identify", "endpoint": "primary", "match": "192.0.2.10"}

    backup = section(pjsip, "backup", "endpoint")
    assert (backup["context"], backup["trust_id_inbound"]) == ("ivr-auth-inbound", "yes")
    assert backup["outbound_auth"] == "backup-auth"
    assert section(pjsip, "backup", "aor")["contact"] == "sip:192.0.2.20:5086;transport=tcp"
    assert section(pjsip, "backup", "identify")["match"] == "192.0.2.20"
    assert section(pjsip, "backup-auth", "auth")["username"] == "acct"
    # The single trunk: section is not used when trunks: is set.
    assert "unused" not in text
    assert "192.0.2.99" not in text


def test_a_single_trunk_renders_as_before(tmp_path: Path) -> None:
    cfg = config.from_mapping({"trunk": {"name": "carrier", "host": "192.0.2.10", "port": 5099}})

    text = render_all(cfg, tmp_path)["ivr-auth-pjsip.conf"]

    assert text.endswith(
        "[carrier]\ntype = aor\ncontact = sip:192.0.2.10:5099\n\n"
        "[carrier]\ntype = identify\nendpoint = carrier\nmatch = 192.0.2.10\n\n"
    )
    assert text.count("type = endpoint") == 1


def test_one_trunk_as_a_list_renders_as_the_single_trunk() -> None:
    single = config.TrunkConfig(name="carrier", host="192.0.2.10")
    listed = config.from_mapping({"trunks": [{"name": "carrier", "host": "192.0.2.10"}]})

    assert asterisk.trunk_section(listed.outbound_trunks[0]) == asterisk.trunk_section(single)


def test_pjsip_timer_b_is_the_trunk_timeout(tmp_path: Path) -> None:
    cfg = config.from_mapping({"dialer": {"trunk_timeout_seconds": 8}})

    system = section(asterisk_sections(render_all(cfg, tmp_path)["ivr-auth-pjsip-system.conf"]), "system", "system")

    # PJSIP refuses a timer B under 64 x T1.
    assert (system["timer_t1"], system["timer_b"]) == ("125", "8000")


def test_a_timeout_that_is_no_multiple_of_64_ms_rounds_up() -> None:
    assert trunks.sip_timers(7) == {"sip_timer_t1": "110", "sip_timer_b": "7040"}
    assert trunks.sip_timers(6.4) == {"sip_timer_t1": "100", "sip_timer_b": "6400"}
