"""Call flows: what happens on a call for each verification method."""

from __future__ import annotations

from dataclasses import dataclass

from ivr_auth import config, models
from ivr_auth import store as store_mod
from ivr_auth.ari import node as ari_node


@dataclass(frozen=True)
class FlowContext:
    cfg: config.Config
    store: store_mod.Store
    node: ari_node.AriNode
    controller: str


def channel_id_for(verification: models.Verification) -> str:
    """Our channel id for a request's current call attempt (unique per attempt)."""
    return f"ivrauth-{verification.id.hex}-{verification.call_attempts}"
