from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ivr_auth import asterisk_config, config, data, errors, prompts
from ivr_auth_devkit.stack import asterisk, render

TEMPLATES = sorted([*data.ASTERISK_DIR.glob("*.conf"), *data.DIALPLAN_DIR.glob("*.conf")])
DIR_KEYS = ("etc", "varlib", "spool", "log", "ctl", "module", "data")


# --- render() ------------------------------------------------------------------------


def test_placeholders_are_filled() -> None:
    out = render.render("bind = {{host}}:{{ port }}\nname = {{host}}", {"host": "127.0.0.1", "port": "5070"})

    assert out == "bind = 127.0.0.1:5070\nname = 127.0.0.1"


def test_missing_value_names_the_placeholder_and_the_source() -> None:
    with pytest.raises(errors.StackError) as exc:
        render.render("a = {{present}}\nb = {{absent}}", {"present": "x"}, source="pjsip.conf")

    assert str(exc.value) == "pjsip.conf: no value for placeholder {{absent}}"


@pytest.mark.parametrize("value", ["a\nb", "a\rb", "x\n[evil]"])
def test_values_that_would_break_the_file_are_refused(value: str) -> None:
    with pytest.raises(errors.StackError) as exc:
        render.render("password = {{password}}", {"password": value}, source="ari.conf")

    assert "password" in str(exc.value)
    assert str(exc.value).startswith("ari.conf:")


def test_section_values_may_span_lines_and_hold_semicolons() -> None:
    section = "\n[auth]\ntype = auth ; generated\n"

    assert render.render("x\n{{auth_section}}", {"auth_section": section}) == "x\n" + section


def test_asterisk_syntax_is_left_alone() -> None:
    template = "exten => _X.,1,NoOp(${EXTEN} ${CALLERID(num)} $[1+2] {single} {{ }} {{1abc}})"

    assert render.render(template, {}) == template
    assert render.placeholders(template) == set()


def test_a_value_is_not_expanded_again() -> None:
    assert render.render("{{a}}", {"a": "{{b}}", "b": "no"}) == "{{b}}"


def test_placeholders_lists_each_name_once() -> None:
    assert render.placeholders("{{a}} {{ b }} {{a}} ${c}") == {"a", "b"}


def test_unused_values_are_fine() -> None:
    assert render.render("plain", {"unused": "x;\n"}) == "plain"


# --- the project's real templates ----------------------------------------------------


def dirs_under(root: Path) -> dict[str, Path]:
    return {key: root / key for key in DIR_KEYS}


def render_all(cfg: config.Config, root: Path, ari_password: str = "ari-pw") -> dict[str, str]:
    """The stack's own files and the include files they include, by name."""
    values = asterisk.template_values(cfg, ari_password, dirs_under(root))
    own = {t.name: render.render(t.read_text(), values, source=str(t)) for t in TEMPLATES}
    return own | {f.name: f.text for f in asterisk_config.generate(cfg, ari_password)}


def asterisk_sections(text: str) -> list[tuple[str, dict[str, str]]]:
    """Read a rendered file as Asterisk would: ``;`` starts a comment unless escaped."""
    sections: list[tuple[str, dict[str, str]]] = []
    for raw in text.splitlines():
        line, i = "", 0
        while i < len(raw):
            if raw[i] == "\\" and raw[i + 1 : i + 2] == ";":
                line += ";"
                i += 2
                continue
            if raw[i] == ";":
                break
            line += raw[i]
            i += 1
        line = line.strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            sections.append((line[1:-1], {}))
        elif "=" in line and sections:
            key, _, value = line.partition("=")
            sections[-1][1][key.strip().rstrip(">")] = value.strip().removeprefix(">").strip()
    return sections


def section(sections: list[tuple[str, dict[str, str]]], name: str, kind: str) -> dict[str, str]:
    (found,) = [body for n, body in sections if n == name and body.get("type") == kind]
    return found


def test_the_templates_exist() -> None:
    names = {t.name for t in TEMPLATES}

    assert {"asterisk.conf", "pjsip.conf", "ari.conf", "http.conf", "rtp.conf", "extensions.conf"} <= names


def test_template_values_cover_every_placeholder() -> None:
    values = asterisk.template_values(config.Config(), "pw", dirs_under(Path("/x")))
    used = set().union(*(render.placeholders(t.read_text()) for t in TEMPLATES))

    assert used
    assert used <= set(values)


def test_every_template_renders_with_the_defaults(tmp_path: Path) -> None:
    rendered = render_all(config.Config(), tmp_path)

    for name, text in rendered.items():
        assert "{{" not in text, name
        assert "}}" not in text, name


def test_rendered_files_carry_the_config(tmp_path: Path) -> None:
    cfg = config.from_mapping(
        {
            "ari": {"username": "ctl", "app": "ivr-test"},
            "trunk": {"name": "carrier", "host": "192.0.2.10", "port": 5099, "trusted": True},
            "stack": {"bind": "127.0.0.2", "sip_port": 5071, "ari_port": 58089, "rtp_start": 31000, "rtp_end": 31100},
        }
    )

    rendered = render_all(cfg, tmp_path, ari_password="p4ss")

    ast_conf = dict(asterisk_sections(rendered["asterisk.conf"])[0][1])
    assert ast_conf["astetcdir"] == str(tmp_path / "etc")
    assert ast_conf["astmoddir"] == str(tmp_path / "module")
    assert ast_conf["astdatadir"] == str(tmp_path / "data")
    assert ast_conf["astrundir"] == str(tmp_path / "ctl")
    assert ast_conf["astlogdir"] == str(tmp_path / "log")
    assert ast_conf["astspooldir"] == str(tmp_path / "spool")
    assert ast_conf["astvarlibdir"] == str(tmp_path / "varlib")

    ari = asterisk_sections(rendered["ivr-auth-ari.conf"])
    assert section(ari, "ctl", "user")["password"] == "p4ss"

    http = dict(asterisk_sections(rendered["http.conf"]))
    assert http["general"]["bindaddr"] == "127.0.0.2"
    assert http["general"]["bindport"] == "58089"

    rtp = dict(asterisk_sections(rendered["rtp.conf"]))
    assert (rtp["general"]["rtpstart"], rtp["general"]["rtpend"]) == ("31000", "31100")

    pjsip = asterisk_sections(rendered["pjsip.conf"])
    assert section(pjsip, "transport-udp", "transport")["bind"] == "127.0.0.2:5071"
    trunks = asterisk_sections(rendered["ivr-auth-pjsip.conf"])
    endpoint = section(trunks, "carrier", "endpoint")
    # The transport is named (pjsip_transport, or transport-<protocol>).
    assert endpoint["transport"] == "transport-udp"
    assert endpoint["trust_id_inbound"] == "yes"
    assert endpoint["aors"] == "carrier"
    assert section(trunks, "carrier", "aor")["contact"] == "sip:192.0.2.10:5099"
    assert section(trunks, "carrier", "identify")["match"] == "192.0.2.10"


def test_dialplan_keeps_asterisk_variables(tmp_path: Path) -> None:
    text = render_all(config.Config(), tmp_path)["ivr-auth-extensions.conf"]

    assert "${EXTEN}" in text
    assert "${CALLERID(num)}" in text
    assert "${EXTEN:1}" in text


def test_no_trunk_auth_without_a_username(tmp_path: Path) -> None:
    text = render_all(config.Config(), tmp_path)["ivr-auth-pjsip.conf"]
    pjsip = asterisk_sections(text)

    assert "outbound_auth" not in section(pjsip, "trunk", "endpoint")
    assert [name for name, body in pjsip if body.get("type") == "auth"] == []
    assert "trunk-auth" not in text


def test_trunk_auth_with_a_username(tmp_path: Path) -> None:
    cfg = config.from_mapping({"trunk": {"name": "carrier", "username": "acct", "password": "pw"}})

    pjsip = asterisk_sections(render_all(cfg, tmp_path)["ivr-auth-pjsip.conf"])

    assert section(pjsip, "carrier", "endpoint")["outbound_auth"] == "carrier-auth"
    assert section(pjsip, "carrier-auth", "auth") == {
        "type": "auth",
        "auth_type": "userpass",
        "username": "acct",
        "password": "pw",
    }


def test_tcp_trunk_renders(tmp_path: Path) -> None:
    cfg = config.from_mapping({"trunk": {"name": "carrier", "host": "192.0.2.10", "transport": "tcp"}})

    pjsip = asterisk_sections(render_all(cfg, tmp_path)["ivr-auth-pjsip.conf"])

    assert section(pjsip, "carrier", "endpoint")["transport"] == "transport-tcp"
    assert "transport=tcp" in section(pjsip, "carrier", "aor")["contact"]


@pytest.mark.parametrize(
    ("username", "password"),
    [("acct", "pa;ss"), ("acct\n[evil]\ntype = endpoint", "pw"), ("acct", "pw\ncontext = default")],
)
def test_trunk_credentials_survive_rendering_or_are_refused(tmp_path: Path, username: str, password: str) -> None:
    raw: dict[str, Any] = {"trunk": {"name": "carrier", "username": username, "password": password}}
    try:
        rendered = render_all(config.from_mapping(raw), tmp_path)
    except errors.IvrAuthError:
        return
    pjsip = asterisk_sections(rendered["ivr-auth-pjsip.conf"])

    assert [name for name, _ in pjsip][-1] == "carrier-auth"
    auth = section(pjsip, "carrier-auth", "auth")
    assert (auth["username"], auth["password"]) == (username, password)


# --- inbound: Stasis, FastAGI and AMD contexts ---------------------------------------


def dialplan_lines(text: str, context: str) -> list[str]:
    """The lines of one dialplan context, comments and blank lines dropped."""
    lines: list[str] = []
    inside = False
    for raw in text.splitlines():
        line = raw.split(";", 1)[0].strip()
        if line.startswith("[") and line.endswith("]"):
            inside = line == f"[{context}]"
        elif inside and line:
            lines.append(line)
    return lines


def test_no_agi_numbers_routes_nothing() -> None:
    routes = asterisk.agi_routes(config.Config())

    assert routes.startswith(";")
    assert "\n" not in routes
    assert "Goto" not in routes


def test_agi_numbers_are_routed_in_national_and_e164_forms() -> None:
    cfg = config.from_mapping({"inbound": {"agi_numbers": ["050-1234-0000"]}})

    assert asterisk.agi_routes(cfg).splitlines() == [
        "exten => 05012340000,1,Goto(ivr-auth-agi,${EXTEN},1)",
        "exten => 815012340000,1,Goto(ivr-auth-agi,${EXTEN},1)",
    ]


def test_each_agi_number_gets_its_own_routes() -> None:
    cfg = config.from_mapping({"inbound": {"agi_numbers": ["+81312345678", "050-1234-0000"]}})

    extens = [line.split(",", 1)[0] for line in asterisk.agi_routes(cfg).splitlines()]

    assert extens == [
        "exten => 0312345678",
        "exten => 81312345678",
        "exten => 05012340000",
        "exten => 815012340000",
    ]


def test_template_values_for_inbound_and_agi() -> None:
    cfg = config.from_mapping(
        {"inbound": {"app": "inbound-x", "agi_numbers": ["050-1234-0000"]}, "agi": {"listen": "127.0.0.3:4600"}}
    )

    values = asterisk.template_values(cfg, "pw", dirs_under(Path("/x")))

    assert values["inbound_app"] == "inbound-x"
    assert (values["agi_host"], values["agi_port"]) == ("127.0.0.3", "4600")
    assert values["agi_routes_section"] == asterisk.agi_routes(cfg)


def test_template_values_with_the_agi_server_off() -> None:
    values = asterisk.template_values(config.from_mapping({"agi": {"listen": ""}}), "pw", dirs_under(Path("/x")))

    assert (values["agi_host"], values["agi_port"]) == ("127.0.0.1", "4573")


def test_dialplan_renders_the_inbound_contexts(tmp_path: Path) -> None:
    cfg = config.from_mapping(
        {"inbound": {"app": "inbound-x", "agi_numbers": ["050-1234-0000"]}, "agi": {"listen": "127.0.0.3:4600"}}
    )
    template = data.INCLUDE_DIR / "ivr-auth-extensions.conf"

    text = render.render(template.read_text(), asterisk.template_values(cfg, "pw", dirs_under(tmp_path)))

    assert "{{" not in text
    assert "}}" not in text
    inbound = dialplan_lines(text, "ivr-auth-inbound")
    assert inbound[:2] == [
        "exten => 05012340000,1,Goto(ivr-auth-agi,${EXTEN},1)",
        "exten => 815012340000,1,Goto(ivr-auth-agi,${EXTEN},1)",
    ]
    assert "same => n,StasisBroadcast(1000,^inbound-x-[0-9]+$,${EXTEN})" in inbound
    assert "same => n(slot),Stasis(inbound-x-${IVRAUTH_SLOT},${EXTEN})" in inbound
    agi = "\n".join(dialplan_lines(text, "ivr-auth-agi"))
    assert "AGI(agi://127.0.0.3:4600/inbound,${EXTEN})" in agi
    assert "AGI(agi://127.0.0.3:4600/check,${IVRAUTH_ID},${IVRAUTH_CODE})" in agi
    assert dialplan_lines(text, "ivr-auth-amd")[:2] == [
        "exten => s,1,AMD()",
        "same => n,Stasis(${IVRAUTH_APP},amd,${AMDSTATUS},${AMDCAUSE})",
    ]


def test_dialplan_without_agi_numbers_sends_every_did_to_stasis(tmp_path: Path) -> None:
    text = render_all(config.Config(), tmp_path)["ivr-auth-extensions.conf"]

    inbound = dialplan_lines(text, "ivr-auth-inbound")
    assert not any("ivr-auth-agi" in line for line in inbound)
    assert inbound[0].startswith("exten => _X.,1,")
    assert "same => n(slot),Stasis(ivr-auth-inbound-${IVRAUTH_SLOT},${EXTEN})" in inbound
    assert "AGI(agi://127.0.0.1:4573/inbound,${EXTEN})" in text


def test_ipv6_agi_listen_gives_a_bracketed_agi_url(tmp_path: Path) -> None:
    text = render_all(config.from_mapping({"agi": {"listen": "[::1]:4573"}}), tmp_path)["ivr-auth-extensions.conf"]

    assert "AGI(agi://[::1]:4573/inbound,${EXTEN})" in text


def test_the_fastagi_example_plays_the_shipped_prompts_in_the_callers_language(tmp_path: Path) -> None:
    text = render_all(config.Config(), tmp_path)["ivr-auth-extensions.conf"]

    assert f"Set(P={prompts.SHIPPED_DIR}/${{IVRAUTH_LANGUAGE}})" in text
    assert "Read(IVRAUTH_CODE,${ASK},${IVRAUTH_CODE_LENGTH},,1,10)" in text
