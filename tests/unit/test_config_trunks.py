"""Several outbound trunks (``trunks:``) and the failover setting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ivr_auth import config, errors

TWO = [
    {"name": "primary", "host": "192.0.2.10", "priority": 1, "calls_per_second": 2},
    {"name": "backup", "host": "192.0.2.20", "port": 5070, "priority": 2, "caller_id": "0312345679"},
]


def error_for(raw: dict[str, Any]) -> str:
    with pytest.raises(errors.ConfigError) as exc:
        config.from_mapping(raw)
    return str(exc.value)


def test_without_trunks_the_single_trunk_is_the_one() -> None:
    cfg = config.from_mapping({"trunk": {"name": "carrier", "port": 5099}})

    assert cfg.trunks == ()
    assert cfg.outbound_trunks == (cfg.trunk,)
    assert cfg.trunk.priority == 0
    assert cfg.dialer.trunk_retry_seconds == 30.0


def test_trunks_are_read_with_defaults_for_what_is_left_out() -> None:
    cfg = config.from_mapping({"trunks": TWO, "dialer": {"trunk_retry_seconds": 5}})

    primary, backup = cfg.outbound_trunks
    assert primary == config.TrunkConfig(name="primary", host="192.0.2.10", priority=1, calls_per_second=2.0)
    assert (backup.name, backup.port, backup.priority, backup.caller_id) == ("backup", 5070, 2, "0312345679")
    assert backup.max_channels == config.TrunkConfig().max_channels
    assert cfg.dialer.trunk_retry_seconds == 5.0


def test_an_empty_list_means_the_single_trunk() -> None:
    cfg = config.from_mapping({"trunks": []})

    assert cfg.outbound_trunks == (config.TrunkConfig(),)


def test_trunks_from_a_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "ivr-auth.yaml"
    path.write_text(
        "trunks:\n"
        "  - name: a\n    host: 127.0.0.1\n    port: 5085\n    priority: 1\n"
        "  - name: b\n    host: 127.0.0.1\n    port: 5086\n    priority: 2\n    trusted: true\n",
        encoding="utf-8",
    )

    cfg = config.load(path, {})

    assert [(t.name, t.port, t.priority, t.trusted) for t in cfg.outbound_trunks] == [
        ("a", 5085, 1, False),
        ("b", 5086, 2, True),
    ]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"port": 70000}, "trunks[1].port: port 70000 is outside 1-65535"),
        ({"port": "5060"}, "trunks[1].port: expected a whole number"),
        ({"prot": 5060}, "trunks[1].prot: unknown key"),
        ({"priority": 1.5}, "trunks[1].priority: expected a whole number"),
        ({"transport": "tls"}, "trunks[1].transport: 'tls' is not one of udp, tcp"),
        ({"calls_per_second": 0}, "trunks[1].calls_per_second: must be positive"),
        ({"max_channels": 0}, "trunks[1].max_channels: must be at least 1"),
        ({"caller_id": "not a number"}, "trunks[1].caller_id: letters are not accepted"),
        ({"caller_id": 312345678}, "trunks[1].caller_id: expected a string; put the value in quotes"),
        ({"host": "a;b"}, "trunks[1].host: may not contain ';'"),
        ({"username": "u"}, "trunks[1].username and trunks[1].password: set both or neither"),
        ({"name": "transport-udp"}, "trunks[1].name: 'transport-udp' is the name of a section"),
        ({"name": "a b"}, "trunks[1].name: letters, digits"),
    ],
)
def test_a_bad_entry_is_named_by_its_index(entry: dict[str, Any], message: str) -> None:
    raw = {"trunks": [TWO[0], {**TWO[1], **entry}]}

    assert error_for(raw).startswith(message)


def test_trunk_names_are_unique() -> None:
    message = error_for({"trunks": [TWO[0], {**TWO[1], "name": "primary"}]})

    assert message.startswith("trunks[1].name: 'primary' clashes with trunks[0].name 'primary'")


def test_a_trunk_may_not_be_named_after_another_ones_auth_section() -> None:
    raw = {"trunks": [{"name": "a", "username": "u", "password": "p"}, {"name": "a-auth"}]}

    assert error_for(raw).startswith("trunks[1].name: 'a-auth' clashes with trunks[0].name 'a'")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"name": "a"}, "trunks: expected a list of mappings, got dict"),
        (["a"], "trunks[0]: expected a mapping of keys, got str"),
    ],
)
def test_trunks_must_be_a_list_of_mappings(value: Any, message: str) -> None:
    assert error_for({"trunks": value}).startswith(message)


def test_trunks_cannot_come_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)

    with pytest.raises(errors.ConfigError) as exc:
        config.load(None, {"IVR_AUTH_TRUNKS": "a,b"})

    assert str(exc.value).startswith(
        "trunks (from IVR_AUTH_TRUNKS): a list of sections cannot come from the environment"
    )


def test_env_overrides_the_retry_time_and_leaves_the_trunks_alone(tmp_path: Path) -> None:
    path = tmp_path / "ivr-auth.yaml"
    path.write_text("trunks:\n  - name: a\n  - name: b\n", encoding="utf-8")

    cfg = config.load(path, {"IVR_AUTH_DIALER_TRUNK_RETRY_SECONDS": "12.5"})

    assert cfg.dialer.trunk_retry_seconds == 12.5
    assert [t.name for t in cfg.outbound_trunks] == ["a", "b"]


@pytest.mark.parametrize("seconds", [0, -1])
def test_trunk_retry_seconds_must_be_positive(seconds: float) -> None:
    assert error_for({"dialer": {"trunk_retry_seconds": seconds}}).startswith(
        "dialer.trunk_retry_seconds: must be positive"
    )


def test_with_overrides_builds_trunks_from_mappings() -> None:
    cfg = config.with_overrides(config.Config(), trunks=TWO)

    assert [t.name for t in cfg.outbound_trunks] == ["primary", "backup"]
    with pytest.raises(errors.ConfigError, match=r"^trunks\[0\]\.port"):
        config.with_overrides(config.Config(), trunks=[{"name": "x", "port": 0}])


# --- how inbound calls are told to be a trunk's ----------------------------------------


def test_trunks_are_identified_by_ip_unless_told() -> None:
    cfg = config.from_mapping({"trunks": TWO})

    assert [(t.identify, t.identify_header) for t in cfg.outbound_trunks] == [("ip", ""), ("ip", "")]


def test_two_trunks_on_one_host_by_port_or_by_header() -> None:
    cfg = config.from_mapping(
        {
            "trunks": [
                {"name": "a", "host": "192.0.2.10", "port": 5060, "identify": "ip_port"},
                {"name": "b", "host": "192.0.2.10", "port": 5062, "identify": "ip_port"},
                {"name": "c", "host": "192.0.2.10", "identify": "header", "identify_header": "X-Trunk:   carrier-c "},
            ]
        }
    )

    assert [(t.identify, t.identify_header) for t in cfg.outbound_trunks] == [
        ("ip_port", ""),
        ("ip_port", ""),
        ("header", "X-Trunk: carrier-c"),
    ]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"identify": "port"}, "trunks[1].identify: 'port' is not one of ip, ip_port, header"),
        ({"identify": "header"}, 'trunks[1].identify_header: set it with identify: "header", and only then'),
        ({"identify_header": "X-Trunk: b"}, "trunks[1].identify_header: set it with identify"),
        ({"identify": "ip_port", "transport": "tcp"}, "trunks[1].identify: ip_port needs transport udp"),
        (
            {"identify": "header", "identify_header": "X-Trunk: b", "host": "sip.example.net"},
            "trunks[1].host: identify header needs an IP address",
        ),
        ({"identify": "header", "identify_header": "X-Trunk"}, "trunks[1].identify_header: expected 'Name: value'"),
        ({"identify": "header", "identify_header": "X Trunk: b"}, "trunks[1].identify_header: expected 'Name: value'"),
        ({"identify": "header", "identify_header": ": b"}, "trunks[1].identify_header: expected 'Name: value'"),
        ({"identify": "header", "identify_header": "X-Trunk: "}, "trunks[1].identify_header: the header's value"),
        ({"identify": "header", "identify_header": "X-Trunk: a,b"}, "trunks[1].identify_header: the header's value"),
        ({"identify": "header", "identify_header": "X-Trunk: a;b"}, "trunks[1].identify_header: the header's value"),
        ({"identify": "header", "identify_header": "X-Trunk: a\nb"}, "trunks[1].identify_header: the header's value"),
        ({"identify": "header", "identify_header": "X-Trunk: /b.*/"}, "trunks[1].identify_header: a value in /.../"),
    ],
)
def test_a_bad_identification_is_named(entry: dict[str, Any], message: str) -> None:
    raw = {"trunks": [TWO[0], {**TWO[1], **entry}]}

    assert error_for(raw).startswith(message)
