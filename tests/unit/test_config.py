from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ivr_auth import config, errors


def write(directory: Path, text: str, name: str = "ivr-auth.yaml") -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def key_of(exc: pytest.ExceptionInfo[errors.ConfigError]) -> str:
    """The key an error message starts with (messages read ``key: what is wrong``)."""
    return str(exc.value).split(":", 1)[0]


# --- loading and defaults ------------------------------------------------------------


def test_no_file_and_no_env_gives_the_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)

    cfg = config.load(None, {})

    assert cfg.replace(base_dir=".") == config.Config()
    assert Path(cfg.base_dir) == tmp_path.resolve()
    assert cfg.embedded_database
    assert cfg.embedded_asterisk
    assert cfg.http_host_port() == ("127.0.0.1", 8080)


def test_default_file_in_the_working_directory_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "default_language: en\n", name=config.DEFAULT_FILE)
    monkeypatch.chdir(tmp_path)

    assert config.load(None, {}).default_language == "en"


def test_config_env_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    path = write(conf_dir, "trunk:\n  port: 5099\n")
    monkeypatch.chdir(tmp_path)

    cfg = config.load(None, {config.CONFIG_ENV: str(path)})

    assert cfg.trunk.port == 5099
    assert Path(cfg.base_dir) == path.parent.resolve()


def test_file_values_are_read_and_the_rest_defaulted(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
database_url: postgresql://u:p@db.example:5432/ivr
languages: [en]
default_language: en
default_country: US
ari:
  url: https://pbx.example/ari
  password: s3cret
trunk:
  name: carrier
  host: sip.example
  transport: tcp
  username: acct
  password: pw
  number_format: national
  dial_prefix: "0033"
  trusted: true
stack:
  postgres_port: 56000
  start_timeout: 5
""",
    )

    cfg = config.load(path, {})

    assert cfg.database_url == "postgresql://u:p@db.example:5432/ivr"
    assert not cfg.embedded_database
    assert cfg.languages == ("en",)
    assert cfg.default_country == "US"
    assert cfg.ari == config.AriConfig(url="https://pbx.example/ari", password="s3cret")
    assert not cfg.embedded_asterisk
    assert cfg.trunk == config.TrunkConfig(
        name="carrier",
        host="sip.example",
        transport="tcp",
        username="acct",
        password="pw",
        number_format="national",
        dial_prefix="0033",
        trusted=True,
    )
    assert cfg.stack.postgres_port == 56000
    assert cfg.stack.start_timeout == 5.0
    assert isinstance(cfg.stack.start_timeout, float)
    assert cfg.stack.sip_port == config.StackConfig().sip_port
    assert cfg.http == config.HttpConfig()


@pytest.mark.parametrize("text", ["", "# nothing here\n", "ari:\n"])
def test_empty_file_or_section_gives_defaults(tmp_path: Path, text: str) -> None:
    cfg = config.load(write(tmp_path, text), {})

    assert cfg.replace(base_dir=".") == config.Config()


def test_a_number_where_a_string_is_expected_must_be_quoted(tmp_path: Path) -> None:
    with pytest.raises(errors.ConfigError, match=r"^trunk.caller_id: .*quotes"):
        config.load(write(tmp_path, "trunk:\n  caller_id: 812345678\n"), {})

    quoted = config.load(write(tmp_path, "trunk:\n  caller_id: '0312345678'\n"), {})
    assert quoted.trunk.caller_id == "0312345678"


@pytest.mark.parametrize(
    ("key", "written"),
    [("dial_prefix", "0033"), ("caller_id", "0120123456"), ("password", "0123")],
)
def test_unquoted_leading_zero_numbers_keep_their_digits_or_are_refused(tmp_path: Path, key: str, written: str) -> None:
    path = write(tmp_path, f"trunk:\n  username: acct\n  password: pw\n  {key}: {written}\n")
    try:
        cfg = config.load(path, {})
    except errors.ConfigError as exc:
        refusal = str(exc)
    else:
        assert getattr(cfg.trunk, key) == written
        return
    assert refusal.startswith(f"trunk.{key}")


def test_inbound_agi_and_voice_defaults() -> None:
    cfg = config.Config()

    assert cfg.inbound == config.InboundConfig(numbers=(), app="ivr-auth-inbound", agi_numbers=())
    assert cfg.agi == config.AgiConfig(listen="127.0.0.1:4573", read_timeout_seconds=10.0)
    assert cfg.agi_host_port() == ("127.0.0.1", 4573)
    assert cfg.verification.voice_repeats == 2
    assert cfg.verification.voice_key_timeout_seconds == 6.0
    assert cfg.verification.amd is False
    assert cfg.verification.amd_timeout_seconds == 8.0


def test_inbound_agi_and_voice_keys_from_a_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
verification:
  voice_repeats: 0
  voice_key_timeout_seconds: 4
  amd: true
  amd_timeout_seconds: 5.5
inbound:
  numbers: ["050-1234-5678", "+815012340000"]
  app: ivr-inbound.test_1
  agi_numbers: ["0312345678"]
agi:
  listen: 0.0.0.0:4600
  read_timeout_seconds: 2
""",
    )

    cfg = config.load(path, {})

    assert cfg.verification.voice_repeats == 0
    assert cfg.verification.voice_key_timeout_seconds == 4.0
    assert isinstance(cfg.verification.voice_key_timeout_seconds, float)
    assert cfg.verification.amd is True
    assert cfg.verification.amd_timeout_seconds == 5.5
    assert cfg.inbound == config.InboundConfig(
        numbers=("050-1234-5678", "+815012340000"), app="ivr-inbound.test_1", agi_numbers=("0312345678",)
    )
    assert cfg.agi.read_timeout_seconds == 2.0
    assert cfg.agi_host_port() == ("0.0.0.0", 4600)


@pytest.mark.parametrize("repeats", [0, 10])
def test_voice_repeats_bounds_are_accepted(repeats: int) -> None:
    assert config.from_mapping({"verification": {"voice_repeats": repeats}}).verification.voice_repeats == repeats


def test_empty_agi_listen_turns_the_server_off() -> None:
    cfg = config.from_mapping({"agi": {"listen": ""}})

    assert cfg.agi_host_port() is None


def test_agi_listen_may_be_ipv6() -> None:
    assert config.from_mapping({"agi": {"listen": "[::1]:4573"}}).agi_host_port() == ("::1", 4573)


# --- environment overrides -----------------------------------------------------------


def test_env_overrides_are_typed_by_the_field(tmp_path: Path) -> None:
    path = write(tmp_path, "ari:\n  password: from-file\nlanguages: [ja]\nstack:\n  postgres_port: 56000\n")
    env = {
        "IVR_AUTH_ARI_PASSWORD": "from-env",
        "IVR_AUTH_STACK_POSTGRES_PORT": "55999",
        "IVR_AUTH_LANGUAGES": "ja,en",
        "IVR_AUTH_DEFAULT_LANGUAGE": "en",
        "IVR_AUTH_TRUNK_TRUSTED": "true",
        "IVR_AUTH_STACK_START_TIMEOUT": "2.5",
        "IVR_AUTH_TRUNK_DIAL_PREFIX": "0033",
        "IVR_AUTH_TRUNK_CALLER_ID": "0312345678",
    }

    cfg = config.load(path, env)

    assert cfg.ari.password == "from-env"
    assert cfg.stack.postgres_port == 55999
    assert cfg.languages == ("ja", "en")
    assert cfg.default_language == "en"
    assert cfg.trunk.trusted is True
    assert cfg.stack.start_timeout == 2.5
    # Strings stay strings: no YAML reading of leading zeros.
    assert cfg.trunk.dial_prefix == "0033"
    assert cfg.trunk.caller_id == "0312345678"


def test_env_overrides_inbound_agi_and_voice_keys(tmp_path: Path) -> None:
    path = write(tmp_path, "inbound:\n  numbers: ['03-1234-5678']\nagi:\n  listen: 127.0.0.1:4600\n")
    env = {
        "IVR_AUTH_INBOUND_NUMBERS": "050-1234-5678,050-1234-0000",
        "IVR_AUTH_INBOUND_AGI_NUMBERS": " 050-1234-0000 , ",
        "IVR_AUTH_INBOUND_APP": "inbound-x",
        "IVR_AUTH_AGI_READ_TIMEOUT_SECONDS": "3",
        "IVR_AUTH_VERIFICATION_VOICE_REPEATS": "5",
        "IVR_AUTH_VERIFICATION_AMD": "true",
        "IVR_AUTH_VERIFICATION_AMD_TIMEOUT_SECONDS": "4.5",
    }

    cfg = config.load(path, env)

    assert cfg.inbound.numbers == ("050-1234-5678", "050-1234-0000")
    assert cfg.inbound.agi_numbers == ("050-1234-0000",)
    assert cfg.inbound.app == "inbound-x"
    assert cfg.agi.read_timeout_seconds == 3.0
    assert cfg.agi_host_port() == ("127.0.0.1", 4600)
    assert cfg.verification.voice_repeats == 5
    assert cfg.verification.amd is True
    assert cfg.verification.amd_timeout_seconds == 4.5


def test_empty_agi_listen_env_turns_the_server_off(tmp_path: Path) -> None:
    path = write(tmp_path, "agi:\n  listen: 127.0.0.1:4600\n")

    cfg = config.load(path, {"IVR_AUTH_AGI_LISTEN": ""})

    assert cfg.agi.listen == ""
    assert cfg.agi_host_port() is None


# As YAML a lone 05012340000 would be an integer: lists stay text.
@pytest.mark.parametrize("number", ["+815012345678", "05012340000"])
def test_a_single_inbound_number_from_env(tmp_path: Path, number: str) -> None:
    cfg = config.load(write(tmp_path, ""), {"IVR_AUTH_INBOUND_NUMBERS": number})

    assert cfg.inbound.numbers == (number,)


def test_env_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)

    cfg = config.load(None, {"IVR_AUTH_HTTP_LISTEN": "0.0.0.0:9090", "IVR_AUTH_TRUNK_TRUSTED": "false"})

    assert cfg.http_host_port() == ("0.0.0.0", 9090)
    assert cfg.trunk.trusted is False


def test_empty_env_value_unsets_an_optional_key(tmp_path: Path) -> None:
    path = write(tmp_path, "database_url: postgresql://db/ivr\n")

    cfg = config.load(path, {"IVR_AUTH_DATABASE_URL": ""})

    assert cfg.database_url is None


def test_env_cannot_move_base_dir(tmp_path: Path) -> None:
    path = write(tmp_path, "")

    cfg = config.load(path, {"IVR_AUTH_BASE_DIR": "/somewhere/else"})

    assert Path(cfg.base_dir) == tmp_path.resolve()


def test_unrelated_env_is_ignored(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, ""), {"IVR_AUTH_NOT_A_KEY": "x", "PATH": "/bin"})

    assert cfg.replace(base_dir=".") == config.Config()


@pytest.mark.parametrize(
    ("var", "text", "key"),
    [
        ("IVR_AUTH_STACK_POSTGRES_PORT", "abc", "stack.postgres_port"),
        ("IVR_AUTH_STACK_POSTGRES_PORT", "", "stack.postgres_port"),
        ("IVR_AUTH_TRUNK_TRUSTED", "maybe", "trunk.trusted"),
        ("IVR_AUTH_STACK_START_TIMEOUT", "soon", "stack.start_timeout"),
        ("IVR_AUTH_VERIFICATION_AMD", "maybe", "verification.amd"),
        ("IVR_AUTH_VERIFICATION_VOICE_REPEATS", "two", "verification.voice_repeats"),
        ("IVR_AUTH_AGI_READ_TIMEOUT_SECONDS", "soon", "agi.read_timeout_seconds"),
    ],
)
def test_bad_env_value_names_the_key_and_the_variable(tmp_path: Path, var: str, text: str, key: str) -> None:
    with pytest.raises(errors.ConfigError) as exc:
        config.load(write(tmp_path, ""), {var: text})

    assert key_of(exc) == f"{key} (from {var})"


def test_env_value_is_validated_like_a_file_value(tmp_path: Path) -> None:
    with pytest.raises(errors.ConfigError) as exc:
        config.load(write(tmp_path, ""), {"IVR_AUTH_STACK_SIP_PORT": "70000"})

    assert key_of(exc) == "stack.sip_port"
    assert "70000" in str(exc.value)


# --- file errors ---------------------------------------------------------------------


def test_missing_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"

    with pytest.raises(errors.ConfigError, match="cannot read config file") as exc:
        config.load(missing, {})

    assert str(missing) in str(exc.value)


def test_invalid_yaml_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "trunk: [unclosed\n")

    with pytest.raises(errors.ConfigError, match="not valid YAML") as exc:
        config.load(path, {})

    assert str(path) in str(exc.value)


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "42\n"])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str) -> None:
    with pytest.raises(errors.ConfigError, match="top level must be a mapping"):
        config.load(write(tmp_path, text), {})


def test_errors_from_a_file_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(errors.ConfigError) as exc:
        config.load(write(tmp_path, "trunk:\n  prot: 5080\n"), {})

    assert key_of(exc) == "trunk.prot"
    assert "unknown key" in str(exc.value)


# --- validation (one bad key each) ---------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        # shape and types
        ({"colour": "blue"}, "colour"),
        ({"trunk": {"bogus": 1}}, "trunk.bogus"),
        ({"trunk": 5}, "trunk"),
        ({"stack": "fast"}, "stack"),
        ({"stack": {"sip_port": "abc"}}, "stack.sip_port"),
        ({"stack": {"sip_port": 5070.5}}, "stack.sip_port"),
        ({"stack": {"sip_port": True}}, "stack.sip_port"),
        ({"trunk": {"trusted": "yes"}}, "trunk.trusted"),
        ({"trunk": {"trusted": 1}}, "trunk.trusted"),
        ({"stack": {"start_timeout": True}}, "stack.start_timeout"),
        ({"stack": {"start_timeout": "5s"}}, "stack.start_timeout"),
        ({"languages": 5}, "languages"),
        ({"languages": ["ja", 1]}, "languages"),
        ({"ari": {"username": ["a"]}}, "ari.username"),
        ({"ari": {"password": {"a": 1}}}, "ari.password"),
        # ports
        ({"stack": {"postgres_port": 0}}, "stack.postgres_port"),
        ({"stack": {"postgres_port": 70000}}, "stack.postgres_port"),
        ({"stack": {"rtp_end": 65536}}, "stack.rtp_end"),
        ({"trunk": {"port": 65536}}, "trunk.port"),
        ({"http": {"listen": "127.0.0.1:0"}}, "http.listen"),
        ({"http": {"listen": "8080"}}, "http.listen"),
        ({"http": {"listen": "localhost:http"}}, "http.listen"),
        ({"stack": {"sip_port": 58088}}, "stack.ari_port"),
        ({"stack": {"postgres_port": 5070}}, "stack.sip_port"),
        ({"stack": {"ari_port": 30500}}, "stack.ari_port"),
        ({"stack": {"postgres_port": 30000}}, "stack.postgres_port"),
        ({"stack": {"rtp_start": 31000, "rtp_end": 31005}}, "stack.rtp_start/rtp_end"),
        ({"stack": {"rtp_start": 31000, "rtp_end": 30000}}, "stack.rtp_start/rtp_end"),
        # the rest of validate()
        ({"default_country": "XX"}, "default_country"),
        ({"default_country": "jp"}, "default_country"),
        ({"languages": []}, "languages"),
        ({"languages": ["ja", "fr"]}, "languages"),
        ({"languages": ["ja"], "default_language": "en"}, "default_language"),
        ({"database_url": "mysql://db/ivr"}, "database_url"),
        ({"ari": {"url": "ws://pbx/ari", "password": "x"}}, "ari.url"),
        ({"ari": {"url": "http://pbx/ari"}}, "ari.password"),
        ({"ari": {"url": "http://pbx/ari", "password": ""}}, "ari.password"),
        ({"ari": {"app": "ivr auth"}}, "ari.app"),
        ({"ari": {"app": ""}}, "ari.app"),
        ({"trunk": {"name": "my trunk"}}, "trunk.name"),
        ({"trunk": {"name": ""}}, "trunk.name"),
        ({"trunk": {"transport": "tls"}}, "trunk.transport"),
        ({"trunk": {"number_format": "international"}}, "trunk.number_format"),
        ({"trunk": {"dial_prefix": "00a"}}, "trunk.dial_prefix"),
        ({"trunk": {"username": "acct"}}, "trunk.username and trunk.password"),
        ({"trunk": {"password": "pw"}}, "trunk.username and trunk.password"),
        ({"trunk": {"caller_id": "not a number"}}, "trunk.caller_id"),
        ({"stack": {"bind": "localhost"}}, "stack.bind"),
        ({"stack": {"start_timeout": 0}}, "stack.start_timeout"),
        # voice read-out, inbound, FastAGI
        ({"verification": {"voice_repeats": -1}}, "verification.voice_repeats"),
        ({"verification": {"voice_repeats": 11}}, "verification.voice_repeats"),
        ({"verification": {"voice_repeats": 2.5}}, "verification.voice_repeats"),
        ({"verification": {"amd": "yes"}}, "verification.amd"),
        ({"verification": {"amd": 1}}, "verification.amd"),
        ({"verification": {"voice_key_timeout_seconds": 0}}, "verification.voice_key_timeout_seconds"),
        ({"verification": {"amd_timeout_seconds": -1}}, "verification.amd_timeout_seconds"),
        ({"verification": {"retry_delay_seconds": -1}}, "verification.retry_delay_seconds"),
        ({"verification": {"no_input_retries": -1}}, "verification.no_input_retries"),
        ({"inbound": {"numbers": ["050-1234-5678", "not a number"]}}, "inbound.numbers"),
        ({"inbound": {"numbers": ["12"]}}, "inbound.numbers"),
        ({"inbound": {"numbers": ["050-CALL-5678"]}}, "inbound.numbers"),
        ({"inbound": {"agi_numbers": ["050-1234-5678 ext. 9"]}}, "inbound.agi_numbers"),
        ({"inbound": {"numbers": [5012345678]}}, "inbound.numbers"),
        ({"inbound": {"agi_numbers": ["abc"]}}, "inbound.agi_numbers"),
        ({"inbound": {"agi_numbers": ["+81 50 1234 0000 0000 0000"]}}, "inbound.agi_numbers"),
        ({"inbound": {"app": "ivr auth"}}, "inbound.app"),
        ({"inbound": {"app": "ivr,auth"}}, "inbound.app"),
        ({"inbound": {"app": ""}}, "inbound.app"),
        ({"inbound": {"bogus": 1}}, "inbound.bogus"),
        ({"agi": {"listen": "4573"}}, "agi.listen"),
        ({"agi": {"listen": "127.0.0.1:0"}}, "agi.listen"),
        ({"agi": {"listen": "127.0.0.1:agi"}}, "agi.listen"),
        ({"agi": {"read_timeout_seconds": 0}}, "agi.read_timeout_seconds"),
        ({"agi": {"read_timeout_seconds": -1.5}}, "agi.read_timeout_seconds"),
        # a directory of zones, which ZoneInfo failed on with IsADirectoryError
        ({"dashboard": {"timezone": "Asia"}}, "dashboard.timezone"),
    ],
)
def test_each_invalid_value_names_its_key(raw: dict[str, Any], key: str) -> None:
    with pytest.raises(errors.ConfigError) as exc:
        config.from_mapping(raw)

    assert key_of(exc) == key


@pytest.mark.parametrize(
    ("caller_id", "problem"),
    [
        # Letters would be read as other digits (a vanity number).
        ("03-CALL-NOW1", "letters are not accepted"),
        ("0990-123-456", "premium_rate number, never presented as a caller ID"),
    ],
)
def test_the_trunks_caller_id_is_as_strict_as_a_tenants(caller_id: str, problem: str) -> None:
    with pytest.raises(errors.ConfigError, match=rf"^trunk\.caller_id: .*{problem}"):
        config.from_mapping({"trunk": {"caller_id": caller_id}})


def test_unknown_key_lists_the_known_ones() -> None:
    with pytest.raises(errors.ConfigError) as exc:
        config.from_mapping({"ari": {"pasword": "x"}})

    assert "password" in str(exc.value).split("known keys here:", 1)[1]


def test_duplicate_port_message_names_both_keys() -> None:
    with pytest.raises(errors.ConfigError) as exc:
        config.from_mapping({"stack": {"ari_port": 5070}})

    assert str(exc.value) == "stack.ari_port: port 5070 is also stack.sip_port"


def test_valid_edge_values_are_accepted() -> None:
    cfg = config.from_mapping(
        {
            "http": {"listen": "[::1]:65535"},
            "stack": {"bind": "::1", "rtp_start": 40000, "rtp_end": 40010, "postgres_port": 1},
            "trunk": {"dial_prefix": "*#+0", "caller_id": "+81312345678", "name": "a_b-1"},
            "ari": {"url": "http://pbx/ari", "password": "x", "app": "a.b-c_d"},
        }
    )

    assert cfg.http_host_port() == ("::1", 65535)
    assert cfg.stack.rtp_end - cfg.stack.rtp_start == 10


# --- from_mapping, with_overrides, run_dir --------------------------------------------


def test_from_mapping_builds_nested_sections() -> None:
    cfg = config.from_mapping({"trunk": {"host": "10.0.0.1", "port": 5060}, "default_language": "en"})

    assert cfg.trunk.host == "10.0.0.1"
    assert cfg.trunk.port == 5060
    assert cfg.trunk.name == "trunk"
    assert cfg.default_language == "en"
    assert cfg.base_dir == "."


def test_from_mapping_does_not_change_its_argument() -> None:
    raw: dict[str, Any] = {"trunk": {"port": 5060}}

    config.from_mapping(raw)

    assert raw == {"trunk": {"port": 5060}}


def test_with_overrides_replaces_only_the_given_keys() -> None:
    cfg = config.from_mapping({"trunk": {"host": "10.0.0.1"}})

    out = config.with_overrides(cfg, trunk={"port": 5999}, stack={"sip_port": 5071})

    assert out.trunk.port == 5999
    assert out.trunk.host == "10.0.0.1"
    assert out.stack.sip_port == 5071
    assert out.stack.ari_port == cfg.stack.ari_port
    assert cfg.trunk.port == 5080
    assert cfg.stack.sip_port == 5070


def test_with_overrides_validates_the_result() -> None:
    cfg = config.Config()

    with pytest.raises(errors.ConfigError) as exc:
        config.with_overrides(cfg, stack={"sip_port": cfg.stack.postgres_port})

    assert key_of(exc) == "stack.sip_port"


def test_with_overrides_refuses_unknown_keys() -> None:
    with pytest.raises(errors.ConfigError, match=r"^trunk\.prot: unknown key"):
        config.with_overrides(config.Config(), trunk={"prot": 1})


def test_run_dir_is_relative_to_the_config_file_not_the_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "project"
    project.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    path = write(project, "stack:\n  run_dir: var/run\n")
    monkeypatch.chdir(elsewhere)

    assert config.load(path, {}).run_dir == (project / "var" / "run").resolve()
    assert config.load(write(project, "", name="empty.yaml"), {}).run_dir == (project / ".run" / "stack").resolve()


def test_relative_config_path_still_anchors_run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "project"
    project.mkdir()
    write(project, "")
    monkeypatch.chdir(tmp_path)

    cfg = config.load(Path("project") / "ivr-auth.yaml", {})

    assert cfg.run_dir == (project / ".run" / "stack").resolve()
    assert Path(cfg.base_dir).is_absolute()


def test_absolute_run_dir_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "abs-run"
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    path = write(conf_dir, f"stack:\n  run_dir: {target}\n")

    assert config.load(path, {}).run_dir == target.resolve()


def test_run_dir_env_override_is_relative_to_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "")

    cfg = config.load(path, {"IVR_AUTH_STACK_RUN_DIR": "other"})

    assert cfg.run_dir == (tmp_path / "other").resolve()


def test_unquoted_numbers_in_a_list_get_the_quoting_hint(tmp_path: Path) -> None:
    with pytest.raises(errors.ConfigError, match=r"inbound\.numbers: .*put the values in quotes"):
        config.load(write(tmp_path, "inbound:\n  numbers: [0501234567]\n"), {})


def test_agi_numbers_need_the_agi_server(tmp_path: Path) -> None:
    with pytest.raises(errors.ConfigError, match=r"inbound\.agi_numbers: .*agi\.listen"):
        config.from_mapping({"inbound": {"agi_numbers": ["050-1234-0000"]}, "agi": {"listen": ""}})


def test_node_name_and_node_loss_defaults_and_bounds() -> None:
    cfg = config.from_mapping({})
    assert cfg.ari.node == ""
    assert cfg.dialer.node_lost_seconds == 10.0
    cfg = config.from_mapping({"ari": {"node": "tokyo-1.example:8088"}, "dialer": {"node_lost_seconds": 3}})
    assert cfg.ari.node == "tokyo-1.example:8088"
    assert cfg.dialer.node_lost_seconds == 3.0
    with pytest.raises(errors.ConfigError, match=r"^dialer\.node_lost_seconds: must be positive"):
        config.from_mapping({"dialer": {"node_lost_seconds": 0}})
    with pytest.raises(errors.ConfigError, match=r"^ari\.node: letters"):
        config.from_mapping({"ari": {"node": "node one"}})


@pytest.mark.parametrize("seconds", [6.0, 33])
def test_trunk_timeout_is_a_timer_b_pjsip_takes(seconds: float) -> None:
    with pytest.raises(errors.ConfigError, match=r"^dialer\.trunk_timeout_seconds: must be 6\.4-32"):
        config.from_mapping({"dialer": {"trunk_timeout_seconds": seconds}})


# --- limits.allowed_line_types -----------------------------------------------------


def test_allowed_line_types_default_to_numbers_a_person_holds() -> None:
    assert config.Config().limits.allowed_line_types == ("mobile", "fixed", "fixed_or_mobile", "ip")


def test_allowed_line_types_from_a_file_and_from_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "limits:\n  allowed_line_types: [mobile, toll_free]\n")
    assert config.load(path, {}).limits.allowed_line_types == ("mobile", "toll_free")

    cfg = config.load(path, {"IVR_AUTH_LIMITS_ALLOWED_LINE_TYPES": "mobile, fixed,ip"})

    assert cfg.limits.allowed_line_types == ("mobile", "fixed", "ip")


@pytest.mark.parametrize("names", [["mobile", "landline"], ["Mobile"], ["premium-rate"]])
def test_an_unknown_line_type_is_named_with_the_valid_ones(names: list[str]) -> None:
    with pytest.raises(errors.ConfigError) as info:
        config.from_mapping({"limits": {"allowed_line_types": names}})

    assert key_of(info) == "limits.allowed_line_types"
    assert str(info.value).endswith(
        "is not one of mobile, fixed, fixed_or_mobile, ip, toll_free, premium_rate, shared_cost, uan,"
        " personal, pager, voicemail, unknown"
    )


def test_an_unknown_line_type_from_the_environment_is_named(tmp_path: Path) -> None:
    with pytest.raises(errors.ConfigError, match=r"^limits\.allowed_line_types: 'cell' is not one of mobile, "):
        config.load(write(tmp_path, ""), {"IVR_AUTH_LIMITS_ALLOWED_LINE_TYPES": "mobile,cell"})


def test_no_line_type_at_all_is_refused() -> None:
    with pytest.raises(errors.ConfigError, match=r"^limits\.allowed_line_types: at least one line type"):
        config.from_mapping({"limits": {"allowed_line_types": []}})
