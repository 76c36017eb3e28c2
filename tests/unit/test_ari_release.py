"""Reading Asterisk's version and what of newer ARI it carries."""

from __future__ import annotations

import datetime as dt

import pytest

from ivr_auth.ari.release import FEATURES, Feature, Release


@pytest.mark.parametrize(
    ("text", "version"),
    [
        ("22.10.1+dfsg+~cs6.17.60671434-1", (22, 10, 1)),
        ("16.28.0~dfsg-0+deb11u10", (16, 28, 0)),
        ("Asterisk 20.6.0~dfsg+~cs6.13.40431414-2build5", (20, 6, 0)),
        ("certified-20.7-cert5", (20, 7)),
        ("18.9-cert11", (18, 9)),
    ],
)
def test_versions_as_asterisk_gives_them(text: str, version: tuple[int, ...]) -> None:
    found = Release.parse(text)
    assert found is not None
    assert found.version == version
    assert found.text == text


@pytest.mark.parametrize("text", ["", "GIT-master-3e3f1a2", "SVN-trunk-r1", "unknown"])
def test_what_is_no_version_reads_as_none(text: str) -> None:
    assert Release.parse(text) is None


def test_from_asterisk_info() -> None:
    assert Release.from_info({"system": {"version": "22.5.0"}}) == Release((22, 5, 0), "22.5.0")
    assert Release.from_info({"system": {}}) is None
    assert Release.from_info({}) is None
    assert Release.from_info({"system": "22.5.0"}) is None


@pytest.mark.parametrize(
    ("version", "feature", "has"),
    [
        ((16, 28, 0), Feature.WEBSOCKET_CLIENT_MODULE, False),
        ((20, 12, 0), Feature.WEBSOCKET_CLIENT_MODULE, False),
        ((20, 13, 0), Feature.WEBSOCKET_CLIENT_MODULE, True),
        ((21, 8, 0), Feature.WEBSOCKET_CLIENT_MODULE, True),
        ((22, 2, 0), Feature.WEBSOCKET_CLIENT_MODULE, False),
        ((22, 3, 0), Feature.WEBSOCKET_CLIENT_MODULE, True),
        ((23, 0, 0), Feature.WEBSOCKET_CLIENT_MODULE, True),
        ((22, 3, 0), Feature.REST_OVER_WEBSOCKET, False),
        ((22, 4, 0), Feature.REST_OVER_WEBSOCKET, True),
        ((20, 14, 0), Feature.REST_OVER_WEBSOCKET, True),
        ((20, 15, 0), Feature.OUTBOUND_WEBSOCKET, True),
        ((22, 4, 1), Feature.OUTBOUND_WEBSOCKET, False),
        # StasisBroadcast came in 20.17.0, 22.7.0 and 23.1.0 (the module's <since>).
        ((20, 16, 0), Feature.STASIS_BROADCAST, False),
        ((20, 17, 0), Feature.STASIS_BROADCAST, True),
        ((21, 99, 0), Feature.STASIS_BROADCAST, False),
        ((22, 6, 0), Feature.STASIS_BROADCAST, False),
        ((22, 7, 0), Feature.STASIS_BROADCAST, True),
        ((22, 10, 1), Feature.STASIS_BROADCAST, True),
        ((23, 0, 0), Feature.STASIS_BROADCAST, False),
        ((23, 1, 0), Feature.STASIS_BROADCAST, True),
        ((24, 0, 0), Feature.STASIS_BROADCAST, True),
        # Variables on events: only 22.10 and later.
        ((20, 99, 0), Feature.VARIABLES_ON_EVENTS, False),
        ((22, 10, 1), Feature.VARIABLES_ON_EVENTS, True),
        ((24, 0, 0), Feature.VARIABLES_ON_EVENTS, True),
    ],
)
def test_features_by_release(version: tuple[int, int, int], feature: Feature, has: bool) -> None:
    assert Release(version, "").has(feature) is has


def test_every_feature_has_its_first_releases() -> None:
    assert set(FEATURES) == set(Feature)
    assert Release((16, 28, 0), "").features() == []
    assert Release((22, 10, 1), "").features() == list(Feature)


@pytest.mark.parametrize(
    ("major", "past"),
    [(13, True), (16, True), (18, True), (20, False), (22, False)],
)
def test_end_of_life_on_the_day_of_writing(major: int, past: bool) -> None:
    assert Release((major, 0, 0), "").past_end_of_life(dt.date(2026, 12, 6)) is past


def test_twenty_ends_in_october_2027() -> None:
    twenty = Release((20, 17, 0), "")
    assert not twenty.past_end_of_life(dt.date(2027, 10, 1))
    assert twenty.past_end_of_life(dt.date(2027, 11, 1))


def test_a_branch_named_alone_stands_for_its_newest_release() -> None:
    assert Release((22,), "22").has(Feature.STASIS_BROADCAST)
    assert Release((20,), "20").has(Feature.OUTBOUND_WEBSOCKET)
    assert Release((20,), "20").has(Feature.STASIS_BROADCAST)
    assert not Release((20,), "20").has(Feature.VARIABLES_ON_EVENTS)
    assert not Release((16,), "16").has(Feature.WEBSOCKET_CLIENT_MODULE)
