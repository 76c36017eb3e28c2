from __future__ import annotations

import re
from pathlib import Path

import pytest

from ivr_auth import errors, prompts

FLOWS = Path(prompts.__file__).parent / "flows"


@pytest.mark.parametrize("name", sorted(prompts.PROMPTS))
def test_every_prompt_has_english(name: str) -> None:
    media = prompts.PROMPTS[name][prompts.FALLBACK_LANGUAGE]

    assert media
    assert all(uri.startswith("sound:") and len(uri) > len("sound:") for uri in media)


@pytest.mark.parametrize("name", sorted(prompts.PROMPTS))
def test_media_in_english(name: str) -> None:
    assert prompts.media(name, "en") == prompts.PROMPTS[name]["en"]


@pytest.mark.parametrize("name", sorted(prompts.PROMPTS))
@pytest.mark.parametrize("language", ["ja", "fr", ""])
def test_media_falls_back_to_english(name: str, language: str) -> None:
    assert prompts.media(name, language) == prompts.PROMPTS[name]["en"]


def test_media_prefers_the_language_when_it_has_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(prompts.PROMPTS, "goodbye", {"en": ["sound:vm-goodbye"], "ja": ["sound:ja-goodbye"]})

    assert prompts.media("goodbye", "ja") == ["sound:ja-goodbye"]
    assert prompts.media("goodbye", "en") == ["sound:vm-goodbye"]


def test_media_returns_a_copy() -> None:
    media = prompts.media("goodbye", "en")
    media.append("sound:beep")

    assert prompts.media("goodbye", "en") == prompts.PROMPTS["goodbye"]["en"]
    assert "sound:beep" not in prompts.PROMPTS["goodbye"]["en"]


@pytest.mark.parametrize("name", ["no_such_prompt", "", "Enter_Code"])
def test_an_unknown_prompt_raises(name: str) -> None:
    with pytest.raises(errors.IvrAuthError, match="no prompt named"):
        prompts.media(name, "en")


def test_playback_language() -> None:
    assert prompts.playback_language("en") == "en"
    # No prompt has Japanese media yet, so Asterisk is asked for English sounds.
    assert prompts.playback_language("ja") == "en"
    assert prompts.playback_language("fr") == "en"


def test_playback_language_is_the_language_once_every_prompt_has_it(monkeypatch: pytest.MonkeyPatch) -> None:
    with_ja = {name: {**by_language, "ja": ["sound:x"]} for name, by_language in prompts.PROMPTS.items()}
    monkeypatch.setattr(prompts, "PROMPTS", with_ja)

    assert prompts.playback_language("ja") == "ja"

    del with_ja["goodbye"]["ja"]
    assert prompts.playback_language("ja") == "en"


def test_every_prompt_the_flows_ask_for_exists() -> None:
    asked = {
        name
        for path in FLOWS.glob("*.py")
        for name in re.findall(r"prompts\.media\(\s*\"(\w+)\"", path.read_text(encoding="utf-8"))
    }

    assert asked, "no prompts.media(...) calls found in ivr_auth/flows"
    assert asked <= set(prompts.PROMPTS)


def test_read_code_reads_the_digits_twice_after_the_intro() -> None:
    media = prompts.read_code("402719", "en")

    intro = prompts.media("code_is", "en")
    assert media[: len(intro)] == intro
    assert media[len(intro) :] == ["digits:402719", prompts.READING_GAP, "digits:402719"]


def test_read_code_times() -> None:
    assert prompts.read_code("1234", "en", times=1)[-1] == "digits:1234"
    assert prompts.read_code("1234", "en", times=3).count("digits:1234") == 3


@pytest.mark.parametrize("code", ["", "12a4", "12 34", "\uff11\uff12\uff13\uff14"])  # the last: full-width digits
def test_read_code_refuses_what_is_not_digits(code: str) -> None:
    with pytest.raises(errors.IvrAuthError):
        prompts.read_code(code, "en")
