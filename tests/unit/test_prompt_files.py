"""The committed prompt files (prompts/, made by `make prompts`) are all there,
match prompts/manifest.yaml and are what Asterisk plays natively."""

from __future__ import annotations

import array
import json
import math
import sys
import wave
from pathlib import Path

import pytest
import yaml

from ivr_auth import data

PROMPTS = data.PROMPTS_DIR
LANGUAGES = ("ja", "en")
DIGIT_LENGTHS = range(4, 11)
# The generator normalises every file to -3 dBFS.
PEAK_DBFS = -3.0
LOUDNESS_FLOOR_DBFS = -30.0
# Sound starts once a 10 ms window is louder than this.
SOUND_DBFS = -40.0
MAX_LEADING_SILENCE_MS = 150
MAX_DURATION_MS = 12_000
MAX_DIGIT_DURATION_MS = 1_200


def expected_texts() -> dict[tuple[str, str], str]:
    """(language, file name) -> text, as the manifest's comment says it is rendered."""
    manifest = yaml.safe_load((PROMPTS / "manifest.yaml").read_text(encoding="utf-8"))
    texts: dict[tuple[str, str], str] = {}
    for name, entry in manifest["prompts"].items():
        for lang in LANGUAGES:
            text = entry[lang].strip().replace("{service}", manifest["service_name"][lang])
            if "{digits}" in text:
                texts.update({(lang, f"{name}_{n}"): text.replace("{digits}", str(n)) for n in DIGIT_LENGTHS})
            else:
                texts[(lang, name)] = text
    return texts


def load_index() -> dict[str, dict[str, dict[str, object]]]:
    index: dict[str, dict[str, dict[str, object]]] = json.loads((PROMPTS / "index.json").read_text(encoding="utf-8"))
    return index


EXPECTED = expected_texts()
INDEX = load_index()
FILES = sorted(set(EXPECTED) | {(lang, name) for lang, entries in INDEX.items() for name in entries})


def read_wav(path: Path) -> tuple[tuple[str, int, int, int], array.array[int]]:
    """(compression, channels, rate, sample width) and the samples."""
    with wave.open(str(path), "rb") as w:
        form = (w.getcomptype(), w.getnchannels(), w.getframerate(), w.getsampwidth())
        frames = w.readframes(w.getnframes())
    pcm = array.array("h", frames)
    if sys.byteorder == "big":
        pcm.byteswap()
    return form, pcm


def dbfs(values: array.array[int]) -> float:
    rms = math.sqrt(sum(v * v for v in values) / len(values)) if values else 0.0
    return 20 * math.log10(rms / 32768) if rms else -math.inf


def test_the_index_lists_exactly_the_manifest_prompts() -> None:
    listed = {(lang, name) for lang, entries in INDEX.items() for name in entries}

    assert listed == set(EXPECTED)
    assert set(INDEX) == set(LANGUAGES)


def test_every_file_is_in_the_index() -> None:
    on_disk = {(lang, path.stem) for lang in LANGUAGES for path in (PROMPTS / lang).glob("*.wav")}

    assert on_disk == set(EXPECTED)


def test_both_languages_have_the_same_prompts() -> None:
    assert {name for lang, name in EXPECTED if lang == "ja"} == {name for lang, name in EXPECTED if lang == "en"}


@pytest.mark.parametrize(("lang", "name"), FILES)
def test_the_index_text_is_the_manifest_text(lang: str, name: str) -> None:
    assert INDEX[lang][name]["text"] == EXPECTED[(lang, name)]


@pytest.mark.parametrize(("lang", "name"), FILES)
def test_prompt_file(lang: str, name: str) -> None:
    path = PROMPTS / lang / f"{name}.wav"
    assert path.is_file(), f"{path} missing: run `make prompts`"
    form, pcm = read_wav(path)

    assert form == ("NONE", 1, 8000, 2)
    duration_ms = round(len(pcm) * 1000 / 8000)
    assert INDEX[lang][name]["duration_ms"] == duration_ms
    assert 0 < duration_ms < (MAX_DIGIT_DURATION_MS if name.startswith("digit_") else MAX_DURATION_MS)

    peak = 20 * math.log10(max(abs(v) for v in pcm) / 32768)
    assert PEAK_DBFS - 0.5 < peak < PEAK_DBFS + 0.5
    assert dbfs(pcm) > LOUDNESS_FLOOR_DBFS

    window = 80  # 10 ms
    leading = next((i for i in range(0, len(pcm), window) if dbfs(pcm[i : i + window]) > SOUND_DBFS), len(pcm))
    assert leading * 1000 / 8000 <= MAX_LEADING_SILENCE_MS


def test_no_prompt_is_stale_against_its_text() -> None:
    # Needs no TTS: compares the committed files with the manifest's text.
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[2] / "scripts" / "make-prompts.py"
    result = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
