"""The retry schedule of webhook deliveries."""

from __future__ import annotations

import pytest

from ivr_auth import config, errors, webhooks

CFG = config.WebhooksConfig(backoff_base_seconds=2.0, backoff_max_seconds=900.0)


@pytest.mark.parametrize(
    ("attempt", "ceiling"),
    [(1, 2.0), (2, 4.0), (3, 8.0), (4, 16.0), (9, 512.0), (10, 900.0), (50, 900.0)],
)
def test_backoff_doubles_up_to_the_cap(attempt: int, ceiling: float) -> None:
    assert webhooks.backoff(attempt, CFG, rand=lambda: 1.0) == ceiling
    # Equal jitter: never less than half the ceiling.
    assert webhooks.backoff(attempt, CFG, rand=lambda: 0.0) == ceiling / 2


def test_backoff_is_jittered() -> None:
    waits = {webhooks.backoff(5, CFG) for _ in range(50)}

    assert len(waits) > 1
    assert all(16.0 <= w <= 32.0 for w in waits)


def test_backoff_config_is_validated() -> None:
    with pytest.raises(errors.ConfigError, match=r"webhooks\.backoff_max_seconds"):
        config.from_mapping({"webhooks": {"backoff_base_seconds": 10, "backoff_max_seconds": 5}})
    with pytest.raises(errors.ConfigError, match=r"webhooks\.concurrency"):
        config.from_mapping({"webhooks": {"concurrency": 0}})


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://10.1.2.3/hook",
        "https://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data",  # cloud metadata
        "http://[::1]:9000/hook",
        "http://0.0.0.0/hook",
    ],
)
async def test_non_public_destinations_are_refused(url: str) -> None:
    why = await webhooks._private_destination(url)

    assert why is not None
    assert "non-public address" in why


async def test_public_address_is_allowed() -> None:
    assert await webhooks._private_destination("https://8.8.8.8/hook") is None


async def test_url_without_a_host() -> None:
    assert await webhooks._private_destination("http:///hook") == "the callback URL has no host"
