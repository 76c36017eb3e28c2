"""The ``sms`` section of the config: its carriers' rules, and errors that
name the bad key."""

from __future__ import annotations

from typing import Any

import pytest

from ivr_auth import config, errors


def carriers(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"sms": {"carriers": list(entries)}}


def test_defaults_have_no_carrier() -> None:
    cfg = config.Config()
    assert cfg.sms.carriers == ()
    assert config.SmsCarrierConfig().source_addr == "IVRAUTH"


def test_a_full_carrier() -> None:
    cfg = config.from_mapping(
        carriers(
            {
                "name": "carrier-a_1",
                "host": "192.0.2.30",
                "port": 2775,
                "system_id": "ivr-auth",
                "password": "secret",
                "source_addr": "+815012345678",
                "window": 1000,
                "messages_per_second": 0.5,
                "priority": 2,
            },
            {"name": "b"},
        )
    )
    first, second = cfg.sms.carriers
    assert (first.name, first.window, first.messages_per_second, first.priority) == ("carrier-a_1", 1000, 0.5, 2)
    assert second.port == 2775


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (carriers({"name": "a"}, {"name": "a"}), "sms.carriers[1].name: 'a' is also carriers[0]'s name"),
        (carriers({"name": "A"}), "sms.carriers[0].name: 'A': a-z, 0-9, '_' and '-' only"),
        (carriers({"name": ""}), "sms.carriers[0].name: "),
        (carriers({"name": "a", "source_addr": "TWELVECHARSX"}), "sms.carriers[0].source_addr: 'TWELVECHARSX' is no"),
        (carriers({"name": "a", "source_addr": "1234567890123456"}), "sms.carriers[0].source_addr: "),
        (carriers({"name": "a", "source_addr": "認証"}), "sms.carriers[0].source_addr: "),
        (carriers({"name": "a", "source_addr": ""}), "sms.carriers[0].source_addr: "),
        (carriers({"name": "a", "window": 0}), "sms.carriers[0].window: must be 1-1000"),
        (carriers({"name": "a", "window": 1001}), "sms.carriers[0].window: must be 1-1000"),
        (carriers({"name": "a", "messages_per_second": 0}), "sms.carriers[0].messages_per_second: must be positive"),
        (carriers({"name": "a", "port": 0}), "sms.carriers[0].port: port 0 is outside 1-65535"),
        (carriers({"name": "a", "password": "123456789"}), "sms.carriers[0].password: must be at most 8 characters"),
        (carriers({"name": "a", "system_id": "x" * 16}), "sms.carriers[0].system_id: must be at most 15 characters"),
        (
            carriers({"name": "a", "reconnect_min_seconds": 10, "reconnect_max_seconds": 5}),
            "sms.carriers[0].reconnect_max_seconds: must be at least reconnect_min_seconds",
        ),
        (carriers({"name": "a", "bogus": 1}), "sms.carriers[0].bogus: unknown key"),
        ({"sms": {"carriers": {"name": "a"}}}, "sms.carriers: expected a list of mappings, got dict"),
        ({"sms": {"poll_interval_seconds": 5, "lease_seconds": 10}}, "sms.lease_seconds: must be at least three"),
    ],
)
def test_errors_name_the_key(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(errors.ConfigError) as raised:
        config.from_mapping(raw)
    assert str(raised.value).startswith(message)


def test_a_password_is_never_in_an_error() -> None:
    with pytest.raises(errors.ConfigError) as raised:
        config.from_mapping(carriers({"name": "a", "password": "toolongsecret"}))
    assert "toolongsecret" not in str(raised.value)


def test_the_environment_sets_sms_keys_but_not_carriers() -> None:
    cfg = config.load("/dev/null", {"IVR_AUTH_SMS_SERVICE_NAME_EN": "Example", "IVR_AUTH_SMS_LEASE_SECONDS": "60"})
    assert (cfg.sms.service_name_en, cfg.sms.lease_seconds) == ("Example", 60.0)
    with pytest.raises(errors.ConfigError, match=r"sms\.carriers \(from IVR_AUTH_SMS_CARRIERS\): a list of sections"):
        config.load("/dev/null", {"IVR_AUTH_SMS_CARRIERS": "a"})


def test_an_empty_section_is_the_defaults() -> None:
    assert config.from_mapping({"sms": None}).sms == config.SmsConfig()
