"""``ivr-auth asterisk-config``: the files an operator includes from their
own /etc/asterisk."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest

from ivr_auth import asterisk_config, cli, config, controller, data, errors
from tests.unit.test_stack_render import asterisk_sections, section

# Where Debian's asterisk packages keep the stock configuration (the host's
# Asterisk 16 and the Asterisk 22 tree `make setup` builds).
SAMPLE_DIRS = (Path("/usr/share/asterisk/conf/samples"), Path("/var/tmp/sid/usr/share/asterisk/conf/samples"))
# Sections of the stock files, for machines without them.
STOCK_SECTIONS = {
    "ari.conf": {"general"},
    "http.conf": {"general"},
    "pjsip.conf": set(),
    "extensions.conf": {"general", "globals", "default", "demo", "public", "local", "longdistance", "international"},
    "modules.conf": {"modules"},
}
CFG = config.from_mapping(
    {
        "ari": {"username": "ivr-auth-ctl"},
        "trunks": [
            {"name": "carrier", "host": "192.0.2.10", "username": "acct", "password": "trunk-pw"},
            {"name": "backup", "host": "192.0.2.20", "transport": "tcp"},
        ],
        "inbound": {"app": "ivr-auth-in", "agi_numbers": ["050-1234-0000"]},
    }
)


def files(cfg: config.Config = CFG, version: tuple[int, ...] | None = None) -> dict[str, asterisk_config.IncludeFile]:
    return {f.name: f for f in asterisk_config.generate(cfg, "ari-pw", version)}


def sections_in(text: str) -> list[str]:
    """Section names as written, an addition to a section as ``general(+)``."""
    return [m.group(1) + (m.group(2) or "") for m in re.finditer(r"^\[([^\]]+)\](\(\+\))?", text, re.MULTILINE)]


def settings(text: str, name: str) -> dict[str, str]:
    """The settings of section ``name`` (as ``sections_in`` names it)."""
    headed = re.sub(r"^\[([^\]]+)\]\(\+\)", r"[\1(+)]", text, flags=re.MULTILINE)
    (found,) = [body for n, body in asterisk_sections(headed) if n == name]
    return found


def stock_sections(name: str) -> set[str]:
    found = set(STOCK_SECTIONS[name])
    for folder in SAMPLE_DIRS:
        sample = folder / f"{name}.sample"
        if sample.is_file():
            found |= {n for n in sections_in(sample.read_text(errors="replace")) if "(" not in n}
    return found


def test_every_file_says_where_it_goes_and_why() -> None:
    for f in files().values():
        head = f.text.split("\n[", 1)[0]
        assert head.startswith("; ivr-auth: "), f.name
        assert f"in /etc/asterisk/{f.into}" in head, f.name
        assert f";   {f.include_line}" in head, f.name
        assert "; Why: " in head, f.name
        assert all(line.startswith(";") or not line for line in head.splitlines()), f.name


def test_the_files_go_where_the_operator_keeps_each_setting() -> None:
    assert {name: f.into for name, f in files().items()} == {
        "ivr-auth-ari.conf": "ari.conf",
        "ivr-auth-http.conf": "http.conf",
        "ivr-auth-pjsip.conf": "pjsip.conf",
        "ivr-auth-pjsip-system.conf": "pjsip.conf",
        "ivr-auth-extensions.conf": "extensions.conf",
        "ivr-auth-modules.conf": "modules.conf",
    }


def test_no_section_takes_the_place_of_a_stock_one() -> None:
    for f in files().values():
        stock = stock_sections(f.into)
        for header in sections_in(f.text):
            name = header.removesuffix("(+)")
            if header.endswith("(+)"):
                # Added to the operator's own section, which must exist.
                assert name in stock, (f.name, name)
            else:
                assert name not in stock, (f.name, name)


def test_contexts_and_the_ari_user_are_ivr_auths_own() -> None:
    found = files()
    contexts = sections_in(found["ivr-auth-extensions.conf"].text)
    assert contexts == ["ivr-auth-inbound", "ivr-auth-agi", "ivr-auth-amd"]
    ari = asterisk_sections(found["ivr-auth-ari.conf"].text)
    assert section(ari, "ivr-auth-ctl", "user")["password"] == "ari-pw"
    assert sections_in(found["ivr-auth-ari.conf"].text) == ["general(+)", "ivr-auth-ctl"]
    assert settings(found["ivr-auth-ari.conf"].text, "general(+)")["websocket_write_timeout"] == "1000"
    assert "bench" not in found["ivr-auth-extensions.conf"].text


def test_the_http_settings_add_to_the_operators_general() -> None:
    text = files()["ivr-auth-http.conf"].text

    assert sections_in(text) == ["general(+)"]
    assert settings(text, "general(+)") == {"enabled": "yes", "sessionlimit": "1000"}


def test_trunks_timers_and_inbound_come_from_the_config() -> None:
    found = files()
    pjsip = asterisk_sections(found["ivr-auth-pjsip.conf"].text)
    assert section(pjsip, "carrier", "endpoint")["context"] == "ivr-auth-inbound"
    assert section(pjsip, "carrier-auth", "auth")["password"] == "trunk-pw"
    assert section(pjsip, "backup", "aor")["contact"] == "sip:192.0.2.20:5080;transport=tcp"
    assert section(pjsip, "backup", "endpoint")["transport"] == "transport-tcp"
    system = section(asterisk_sections(found["ivr-auth-pjsip-system.conf"].text), "system", "system")
    assert (system["timer_t1"], system["timer_b"]) == ("125", "8000")
    dialplan = found["ivr-auth-extensions.conf"].text
    assert "StasisBroadcast(1000,^ivr-auth-in-[0-9]+$,${EXTEN})" in dialplan
    assert "Stasis(ivr-auth-in-${IVRAUTH_SLOT},${EXTEN})" in dialplan
    # Where a draining controller sends a call reaching its slot back to (the next slot).
    assert f"n({controller.INBOUND_SLOT_LABEL}),Stasis(ivr-auth-in-${{{controller.INBOUND_SLOT_VARIABLE}}}" in dialplan
    assert "exten => 05012340000,1,Goto(ivr-auth-agi,${EXTEN},1)" in dialplan
    assert "{{" not in "".join(f.text for f in found.values())


def test_files_with_passwords_are_secret() -> None:
    found = files()
    assert [name for name, f in found.items() if f.secret] == ["ivr-auth-ari.conf", "ivr-auth-pjsip.conf"]
    without = files(config.from_mapping({"trunk": {"name": "carrier"}}))
    assert [name for name, f in without.items() if f.secret] == ["ivr-auth-ari.conf"]


@pytest.mark.parametrize(
    ("version", "needed"),
    [
        ((16, 28), False),
        ((18,), False),
        ((20, 12), False),
        ((20, 13), True),
        ((21, 7, 1), False),
        ((21, 8), True),
        ((22, 2), False),
        ((22, 3), True),
        ((22,), True),
        ((22, 10), True),
        ((23, 0), True),
    ],
)
def test_res_websocket_client_is_loaded_only_where_res_ari_needs_it(version: tuple[int, ...], needed: bool) -> None:
    text = files(version=version)["ivr-auth-modules.conf"].text

    assert ("load = res_websocket_client.so" in text) is needed
    assert asterisk_config.needs_websocket_client(version) is needed
    assert ("res_websocket_client.so" in asterisk_config.modules(version)) is needed


@pytest.mark.parametrize(
    ("version", "has"),
    [
        ((16, 28), False),
        ((20, 16), False),
        ((20, 17), True),
        ((21, 8), False),
        ((22, 6), False),
        ((22, 7), True),
        ((22,), True),
        ((23, 0), False),
        ((23, 1), True),
    ],
)
def test_stasis_broadcast_is_loaded_where_asterisk_has_it(version: tuple[int, ...], has: bool) -> None:
    text = files(version=version)["ivr-auth-modules.conf"].text
    loads = re.findall(r"^load = (\S+)$", text, re.MULTILINE)

    assert ("load = app_stasis_broadcast.so" in text) is has
    assert ("res_stasis_broadcast.so" in asterisk_config.modules(version)) is has
    assert loads == asterisk_config.modules(version)
    # IFMODULE(), with which the one dialplan asks whether StasisBroadcast is there.
    assert "func_module.so" in loads


def test_the_default_version_is_22() -> None:
    assert files()["ivr-auth-modules.conf"].text == files(version=(22,))["ivr-auth-modules.conf"].text
    assert "load = res_websocket_client.so" in files()["ivr-auth-modules.conf"].text


def test_modules_add_to_the_operators_modules_section() -> None:
    text = files()["ivr-auth-modules.conf"].text
    loads = re.findall(r"^load = (\S+)$", text, re.MULTILINE)

    assert sections_in(text) == ["modules(+)"]
    assert loads == asterisk_config.modules((22,))
    assert {"res_ari.so", "app_stasis.so", "chan_pjsip.so", "app_amd.so", "res_agi.so"} <= set(loads)
    assert len(loads) == len(set(loads))


@pytest.mark.parametrize(("text", "version"), [("22", (22,)), ("22.10", (22, 10)), (" 20.13.1 ", (20, 13, 1))])
def test_versions_parse(text: str, version: tuple[int, ...]) -> None:
    assert asterisk_config.parse_version(text) == version


@pytest.mark.parametrize("text", ["", "22.x", "v22", "1.2.3.4", "22."])
def test_bad_versions_are_refused(text: str) -> None:
    with pytest.raises(errors.ConfigError, match=r"not like 22 or 22\.10"):
        asterisk_config.parse_version(text)


def test_write_makes_secret_files_0600_and_the_install_notes(tmp_path: Path) -> None:
    out = tmp_path / "new" / "dir"

    written = asterisk_config.write(list(files().values()), out)

    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in written}
    assert modes["ivr-auth-ari.conf"] == modes["ivr-auth-pjsip.conf"] == 0o600
    assert modes["ivr-auth-http.conf"] == 0o644
    notes = (out / asterisk_config.INSTALL_NAME).read_text()
    for f in files().values():
        assert f"in /etc/asterisk/{f.into} add:  #include {f.name}" in notes


def test_write_refuses_to_overwrite_and_writes_nothing(tmp_path: Path) -> None:
    mine = tmp_path / "ivr-auth-http.conf"
    mine.write_text("; the operator's own\n")

    with pytest.raises(errors.IvrAuthError, match=r"never writes over a file.*--force"):
        asterisk_config.write(list(files().values()), tmp_path)

    assert mine.read_text() == "; the operator's own\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ivr-auth-http.conf"]


def test_force_overwrites_and_tightens_the_mode(tmp_path: Path) -> None:
    stale = tmp_path / "ivr-auth-ari.conf"
    stale.write_text("old")
    stale.chmod(0o644)

    asterisk_config.write(list(files().values()), tmp_path, force=True)

    assert "ari-pw" in stale.read_text()
    assert stat.S_IMODE(stale.stat().st_mode) == 0o600


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ivr-auth.yaml"
    path.write_text(text)
    return path


def test_the_command_writes_the_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = write_config(tmp_path, "ari:\n  password: from-the-config\ntrunk:\n  name: carrier\n")
    out = tmp_path / "out"

    assert cli.main(["-c", str(conf), "asterisk-config", "--out", str(out), "--asterisk-version", "16.28"]) == 0

    assert "password = from-the-config" in (out / "ivr-auth-ari.conf").read_text()
    assert "res_websocket_client" not in (out / "ivr-auth-modules.conf").read_text().split("[modules](+)")[1]
    printed = capsys.readouterr().out
    assert "in /etc/asterisk/ari.conf add  #include ivr-auth-ari.conf" in printed
    assert "from-the-config" not in printed
    # A second run refuses; --force overwrites.
    assert cli.main(["-c", str(conf), "asterisk-config", "--out", str(out)]) == 1
    assert "--force" in capsys.readouterr().err
    assert cli.main(["-c", str(conf), "asterisk-config", "--out", str(out), "--force"]) == 0


def test_the_command_needs_the_ari_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("IVR_AUTH_ARI_PASSWORD", raising=False)
    conf = write_config(tmp_path, "trunk:\n  name: carrier\n")

    assert cli.main(["-c", str(conf), "asterisk-config", "--out", str(tmp_path / "out")]) == 2

    assert "ari.password" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_trunk_names_the_operators_own_transport() -> None:
    """Every endpoint names its transport: the operator's, where it is called
    otherwise than Asterisk's sample transport-udp / transport-tcp."""
    cfg = config.from_mapping({"trunk": {"name": "carrier", "host": "192.0.2.10", "pjsip_transport": "wan.udp-1"}})
    pjsip = asterisk_sections(files(cfg)["ivr-auth-pjsip.conf"].text)
    assert section(pjsip, "carrier", "endpoint")["transport"] == "wan.udp-1"
    with pytest.raises(errors.ConfigError, match="pjsip_transport"):
        config.from_mapping({"trunk": {"pjsip_transport": "udp;x"}})


def identification(trunk: dict[str, object]) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """The trunk's identify and endpoint sections, and the endpoint's ACL
    lines in their order (a later matching rule wins)."""
    cfg = config.from_mapping({"trunk": {"name": "carrier", "host": "192.0.2.10", **trunk}})
    text = files(cfg)["ivr-auth-pjsip.conf"].text
    pjsip = asterisk_sections(text)
    acl = re.findall(r"^((?:deny|permit) = .*)$", text, re.MULTILINE)
    return section(pjsip, "carrier", "identify"), section(pjsip, "carrier", "endpoint"), acl


def test_a_trunk_is_identified_by_its_hosts_address_by_default() -> None:
    identify, _, acl = identification({})
    assert identify == {"type": "identify", "endpoint": "carrier", "match": "192.0.2.10"}
    assert acl == []


def test_a_trunk_identified_by_ip_port_matches_its_port_only() -> None:
    identify, _, acl = identification({"port": 5062, "identify": "ip_port"})
    assert identify["match"] == "192.0.2.10:5062"
    assert acl == []
    identify, _, _ = identification({"host": "2001:db8::10", "identify": "ip_port"})
    assert identify["match"] == "[2001:db8::10]:5080"


def test_a_trunk_identified_by_a_header_admits_its_host_only() -> None:
    identify, endpoint, acl = identification({"identify": "header", "identify_header": "X-Trunk: carrier-b"})
    assert identify == {"type": "identify", "endpoint": "carrier", "match_header": "X-Trunk: carrier-b"}
    # Anyone could send the header: the endpoint refuses every address but the host's.
    assert acl == ["deny = 0.0.0.0/0.0.0.0", "deny = ::/0", "permit = 192.0.2.10"]
    assert endpoint["context"] == "ivr-auth-inbound"


def test_the_embedded_stack_runs_the_header_identifier_before_ip() -> None:
    stack_pjsip = asterisk_sections((data.ASTERISK_DIR / "pjsip.conf").read_text())
    order = section(stack_pjsip, "global", "global")["endpoint_identifier_order"].split(",")
    assert order.index("header") < order.index("ip")


def test_an_ipv6_trunk_has_its_contact_in_brackets() -> None:
    cfg = config.from_mapping({"trunk": {"name": "carrier", "host": "2001:db8::10", "port": 5062}})
    pjsip = asterisk_sections(files(cfg)["ivr-auth-pjsip.conf"].text)
    assert section(pjsip, "carrier", "aor")["contact"] == "sip:[2001:db8::10]:5062"
