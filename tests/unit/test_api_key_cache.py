"""api/key_cache.py without I/O: what it keeps, for how long, and what
drops it; and the store's statements that must tell it."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from ivr_auth import models
from ivr_auth.api import key_cache
from ivr_auth.store import controls, tenants


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def tenant(name: str = "shop") -> models.Tenant:
    return models.Tenant(uuid.uuid4(), name, None, None, dt.datetime(2026, 12, 1, tzinfo=dt.UTC))


def live(ttl: float = 30.0, **kwargs: object) -> tuple[key_cache.KeyCache, Clock]:
    clock = Clock()
    cache = key_cache.KeyCache(ttl, clock=clock, **kwargs)  # type: ignore[arg-type]
    cache.live()
    return cache, clock


def test_an_entry_is_kept_for_its_ttl() -> None:
    cache, clock = live(30)
    shop = tenant()
    cache.put(b"h1", shop, cache.generation)

    assert cache.get(b"h1") is shop
    clock.now += 29.9
    assert cache.get(b"h1") is shop
    clock.now += 0.1
    assert cache.get(b"h1") is None
    assert len(cache) == 0


def test_nothing_is_kept_with_a_ttl_of_zero() -> None:
    cache, _ = live(0)
    cache.put(b"h1", tenant(), cache.generation)

    assert not cache.enabled
    assert cache.get(b"h1") is None
    assert len(cache) == 0


def test_nothing_is_trusted_until_invalidations_can_reach_it() -> None:
    cache = key_cache.KeyCache(30)
    cache.put(b"h1", tenant(), cache.generation)
    assert cache.get(b"h1") is None

    cache.live()
    cache.put(b"h1", shop := tenant(), cache.generation)
    assert cache.get(b"h1") is shop

    cache.dead()
    assert cache.get(b"h1") is None
    cache.live()
    assert cache.get(b"h1") is None  # emptied: what changed meanwhile was told to nobody


def test_dropping_a_tenant_drops_all_its_keys_only() -> None:
    cache, _ = live()
    shop, other = tenant("shop"), tenant("other")
    for key_hash, owner in ((b"h1", shop), (b"h2", shop), (b"h3", other)):
        cache.put(key_hash, owner, cache.generation)

    cache.drop_tenant(shop.id)

    assert cache.get(b"h1") is None
    assert cache.get(b"h2") is None
    assert cache.get(b"h3") is other


def test_a_lookup_that_an_invalidation_overtook_is_not_kept() -> None:
    """Read before the revocation committed, stored after its NOTIFY was
    handled: that row must not be trusted for a TTL."""
    cache, _ = live()
    shop = tenant()
    generation = cache.generation

    cache.drop_tenant(shop.id)
    cache.put(b"h1", shop, generation)

    assert cache.get(b"h1") is None


def test_the_oldest_entry_goes_when_full() -> None:
    cache, _ = live(max_entries=2)
    for key_hash in (b"h1", b"h2", b"h3"):
        cache.put(key_hash, tenant(), cache.generation)

    assert len(cache) == 2
    assert cache.get(b"h1") is None
    assert cache.get(b"h3") is not None


@pytest.mark.parametrize(
    ("queries", "statement"),
    [
        (tenants.QUERIES, "update_tenant"),
        (tenants.QUERIES, "create_api_key"),
        (controls.QUERIES, "update_tenant_limits"),
        (controls.QUERIES, "revoke_api_key"),
    ],
)
def test_the_statements_that_change_a_tenant_notify_its_channel(queries: dict[str, str], statement: str) -> None:
    assert f"pg_notify('{tenants.TENANTS_CHANNEL}', " in queries[statement]
