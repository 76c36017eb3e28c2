"""Which trunk an inbound call came from, by its channel name."""

from __future__ import annotations

import pytest

from ivr_auth import ari
from ivr_auth.flows import inbound as inbound_flow

TRUNKS = ["primary", "back-up"]


def event(name: object) -> ari.Event:
    return {"type": "StasisStart", "channel": {"id": "c1", "name": name}}


@pytest.mark.parametrize(
    ("name", "trunk"),
    [
        ("PJSIP/primary-00000001", "primary"),
        ("PJSIP/back-up-0000000a", "back-up"),
        ("PJSIP/stranger-00000002", "primary"),
        ("SIP/back-up-00000003", "primary"),
        ("", "primary"),
        (None, "primary"),
    ],
)
def test_the_endpoint_in_the_channel_name_is_the_trunk(name: object, trunk: str) -> None:
    assert inbound_flow.arrival_trunk(event(name), TRUNKS) == trunk


def test_an_event_without_a_channel_is_the_first_trunks() -> None:
    assert inbound_flow.arrival_trunk({"type": "StasisStart"}, TRUNKS) == "primary"
