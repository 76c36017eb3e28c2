"""Resolving prompts by name and language: the shipped set, an operator's
own recordings, fallbacks, the code read-out. On a small set of its own."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ivr_auth import config, errors, prompts

FLOWS = Path(prompts.__file__).parent / "flows"
NAMES = ["greeting", "enter_code_6", "wrong_code", "goodbye", "code_is", *(f"digit_{d}" for d in range(10))]


@pytest.fixture
def shipped(tmp_path: Path) -> Path:
    root = tmp_path / "shipped"
    index: dict[str, dict[str, object]] = {}
    for lang in ("ja", "en"):
        (root / lang).mkdir(parents=True)
        names = NAMES if lang == "en" else [n for n in NAMES if n != "goodbye"]
        for name in names:
            (root / lang / f"{name}.wav").write_bytes(b"RIFF")
        index[lang] = {name: {"text": name, "duration_ms": 500} for name in names}
    (root / prompts.INDEX_FILE).write_text(json.dumps(index))
    return root


def test_media_is_the_file_by_absolute_path_without_extension(shipped: Path) -> None:
    library = prompts.Library(shipped)

    assert library.media("greeting", "ja") == [f"sound:{shipped}/ja/greeting"]


def test_a_prompt_missing_in_a_language_falls_back_to_english(shipped: Path) -> None:
    assert prompts.Library(shipped).media("goodbye", "ja") == [f"sound:{shipped}/en/goodbye"]


@pytest.mark.parametrize("name", ["no_such_prompt", "", "Greeting"])
def test_an_unknown_prompt_raises(shipped: Path, name: str) -> None:
    with pytest.raises(errors.IvrAuthError, match="no prompt named"):
        prompts.Library(shipped).media(name, "ja")


def test_enter_code_greets_then_says_the_length(shipped: Path) -> None:
    assert prompts.Library(shipped).enter_code("ja", 6) == [
        f"sound:{shipped}/ja/greeting",
        f"sound:{shipped}/ja/enter_code_6",
    ]


def test_read_code_reads_each_digit_twice_evenly_paced(shipped: Path) -> None:
    library = prompts.Library(shipped)

    media = library.read_code("4071", "ja")

    digits = [m.rsplit("/", 1)[1] for m in media if "digit_" in m]
    assert digits == ["digit_4", "digit_0", "digit_7", "digit_1"] * 2
    assert media[0] == f"sound:{shipped}/ja/code_is"
    pauses = [m for m in media if "silence" in m]
    assert pauses.count(f"sound:{shipped}/{prompts.DIGIT_PAUSE}") == 6  # between digits
    assert pauses.count(f"sound:{shipped}/{prompts.READING_PAUSE}") == 2  # before each reading


@pytest.mark.parametrize("code", ["", "12a4", "12 34", "\uff11\uff12\uff13\uff14"])  # the last: full-width digits
def test_read_code_refuses_what_is_not_digits(shipped: Path, code: str) -> None:
    with pytest.raises(errors.IvrAuthError):
        prompts.Library(shipped).read_code(code, "ja")


def test_the_operators_recording_wins(shipped: Path, tmp_path: Path) -> None:
    custom = tmp_path / "custom"
    (custom / "ja").mkdir(parents=True)
    (custom / "ja" / "greeting.wav").write_bytes(b"RIFF")
    library = prompts.Library(shipped, custom)

    assert library.media("greeting", "ja") == [f"sound:{custom}/ja/greeting"]
    assert library.media("wrong_code", "ja") == [f"sound:{shipped}/ja/wrong_code"]


def test_check_warns_about_missing_custom_recordings(shipped: Path, tmp_path: Path) -> None:
    custom = tmp_path / "custom"
    (custom / "ja").mkdir(parents=True)
    (custom / "ja" / "greeting.wav").write_bytes(b"RIFF")

    problems = prompts.Library(shipped, custom).check(("ja",))

    assert any("lacks" in p and "the shipped recordings play instead" in p for p in problems)


def test_from_config_resolves_the_custom_dir_from_the_config_file(tmp_path: Path) -> None:
    cfg = config.from_mapping({"base_dir": str(tmp_path), "prompts": {"custom_dir": "my-prompts"}})

    assert prompts.Library.from_config(cfg).custom_dir == tmp_path / "my-prompts"


def test_a_missing_index_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(errors.ConfigError, match="make prompts"):
        prompts.Library(tmp_path)


def test_every_prompt_the_flows_ask_for_is_a_flow_prompt() -> None:
    asked = {
        name
        for path in FLOWS.glob("*.py")
        for name in re.findall(r"prompts\.media\(\s*f?\"(\w+?)(?:_\{[^}]*\})?\"", path.read_text(encoding="utf-8"))
    }

    assert asked, "no prompts.media(...) calls found in ivr_auth/flows"
    assert asked <= set(prompts.FLOW_PROMPTS)


@pytest.mark.parametrize("language", config.LANGUAGES)
def test_the_shipped_set_has_every_flow_prompt_in_every_language(language: str) -> None:
    library = prompts.Library()
    have = library.names(language)

    for name in prompts.FLOW_PROMPTS:
        if name == "enter_code":
            assert {f"enter_code_{n}" for n in range(4, 11)} <= have
        else:
            assert name in have, f"{language}/{name}"

    for name in have:
        assert library.path(name, language).with_suffix(".wav").is_file()
    for pause in (prompts.DIGIT_PAUSE, prompts.READING_PAUSE):
        assert (prompts.SHIPPED_DIR / f"{pause}.wav").is_file()
