#!/usr/bin/env python3
"""Render the call prompts of src/ivr_auth/data/prompts/manifest.yaml to WAV files Asterisk plays
as they are: 8 kHz, mono, 16-bit signed linear; volume-normalised, leading
and trailing silence trimmed, a short pause kept at the end.

Japanese is spoken by Open JTalk (NIT ATR503 m001 voice), English by flite
(slt voice); sox does the rest. The same manifest and tools give the same
bytes, and a file is written only when its bytes change. Its index.json
lists every file with its text, its length, a hash of how it was made and a
hash of its bytes, so that ``--check`` can tell, without any TTS installed,
whether the committed files still match the manifest.

Run with the project's venv: ``.venv/bin/python scripts/make-prompts.py``
(``make prompts`` installs the tools first).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
import tempfile
import wave
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
PROMPTS_DIR = ROOT / "src" / "ivr_auth" / "data" / "prompts"
LANGUAGES = ("ja", "en")
# Codes are 4 to 10 digits long (the API's bounds).
DIGIT_LENGTHS = range(4, 11)
NAME = re.compile(r"[a-z][a-z0-9_]*")
PLACEHOLDER = re.compile(r"\{(\w*)\}")

OPEN_JTALK_VOICE = "/usr/share/hts-voice/nitech-jp-atr503-m001/nitech_jp_atr503_m001.htsvoice"
OPEN_JTALK_DICTIONARY = "/var/lib/mecab/dic/open-jtalk/naist-jdic"
# Engine command lines; {text} is a file holding the text, {out} the WAV written.
ENGINES: dict[str, tuple[str, ...]] = {
    # Default speed and pitch. (-r 0.8 stretches sentences but hardly changes
    # a lone digit, so it buys no clearer code read-out.)
    "ja": ("open_jtalk", "-m", OPEN_JTALK_VOICE, "-x", OPEN_JTALK_DICTIONARY, "-ow", "{out}", "{text}"),
    "en": ("flite", "-voice", "slt", "-f", "{text}", "-o", "{out}"),
}
PACKAGES = {"open_jtalk": "open-jtalk", "flite": "flite", "sox": "sox"}
# The format Asterisk's format_wav plays without transcoding.
SOX_OUTPUT = ("-t", "wav", "-e", "signed-integer", "-b", "16", "-c", "1", "-r", "8000")
SILENCE = "0.3%"  # of full scale, after normalising: about -50 dBFS
SOX_EFFECTS = (
    ("remix", "-"),
    ("rate", "-v", "8000"),
    ("norm", "-3"),
    # Trim the silence at each end (the trailing one with the sound reversed),
    # with a short fade where the trim cut into the waveform, so no click.
    ("silence", "1", "0.01", SILENCE),
    ("fade", "q", "0.005"),
    ("reverse",),
    ("silence", "1", "0.01", SILENCE),
    ("fade", "q", "0.01"),
    ("reverse",),
    # A short pause after each prompt, so that prompts played back to back do
    # not run together; longer pauses (between a code's digits) are the
    # player's.
    ("pad", "0", "0.1"),
)
# -R: fixed random seed, -D: no dither; together they make sox repeatable.
SOX_GLOBAL = ("-R", "-D", "-V1")


class PromptError(Exception):
    """The manifest or the rendering went wrong."""


@dataclasses.dataclass(frozen=True)
class Prompt:
    lang: str
    name: str  # the file's name: enter_code_6, digit_0, goodbye
    text: str

    @property
    def path(self) -> Path:
        return Path(self.lang) / f"{self.name}.wav"

    @property
    def source(self) -> str:
        """A hash of everything the file is made from but the tools' versions."""
        recipe = {"text": self.text, "engine": ENGINES[self.lang], "sox": [SOX_OUTPUT, SOX_EFFECTS]}
        blob = json.dumps(recipe, ensure_ascii=False, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def load_manifest(path: Path, service: dict[str, str | None]) -> list[Prompt]:
    """Every prompt file the manifest asks for, in manifest order."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise PromptError(f"{path}: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("prompts"), dict):
        raise PromptError(f"{path}: expected a mapping with 'prompts'")
    services = _by_language(data.get("service_name"), "service_name")
    services.update({lang: name for lang, name in service.items() if name})
    prompts: list[Prompt] = []
    for name, entry in data["prompts"].items():
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise PromptError(f"prompts: bad name {name!r} (lower case letters, digits, _)")
        texts = _by_language(entry, f"prompts.{name}")
        uses_digits = {lang: "{digits}" in text for lang, text in texts.items()}
        if len(set(uses_digits.values())) > 1:
            raise PromptError(f"prompts.{name}: {{digits}} in one language but not the other")
        for lang, text in texts.items():
            unknown = set(PLACEHOLDER.findall(text)) - {"service", "digits"}
            if unknown:
                raise PromptError(f"prompts.{name}.{lang}: unknown placeholder {{{sorted(unknown)[0]}}}")
            text = text.replace("{service}", services[lang])
            if uses_digits[lang]:
                prompts.extend(Prompt(lang, f"{name}_{n}", text.replace("{digits}", str(n))) for n in DIGIT_LENGTHS)
            else:
                prompts.append(Prompt(lang, name, text))
    return prompts


def _by_language(value: object, where: str) -> dict[str, str]:
    if not isinstance(value, dict) or set(value) != set(LANGUAGES):
        raise PromptError(f"{where}: expected exactly the languages {', '.join(LANGUAGES)}")
    texts: dict[str, str] = {}
    for lang in LANGUAGES:
        text = value[lang]
        if not isinstance(text, str) or not text.strip():
            raise PromptError(f"{where}.{lang}: expected some text")
        texts[lang] = text.strip()
    return texts


def render(prompt: Prompt, workdir: Path) -> bytes:
    """The WAV file's bytes for ``prompt``."""
    text_file = workdir / "text.txt"
    raw = workdir / "raw.wav"
    out = workdir / "out.wav"
    text_file.write_text(prompt.text + "\n", encoding="utf-8")
    engine = [arg.format(text=text_file, out=raw) for arg in ENGINES[prompt.lang]]
    sox = ["sox", *SOX_GLOBAL, str(raw), *SOX_OUTPUT, str(out), *(arg for effect in SOX_EFFECTS for arg in effect)]
    for command, product in ((engine, raw), (sox, out)):
        product.unlink(missing_ok=True)
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        # open_jtalk exits 0 and writes no file when it finds nothing to say.
        if result.returncode != 0 or not product.exists():
            raise PromptError(
                f"{prompt.path}: {command[0]} failed (exit {result.returncode}): {result.stderr.strip()[-500:]}"
            )
    return out.read_bytes()


def duration_ms(data: bytes | Path) -> int:
    with wave.open(str(data) if isinstance(data, Path) else io.BytesIO(data), "rb") as w:
        return round(w.getnframes() * 1000 / w.getframerate())


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_index(path: Path) -> dict[str, dict[str, dict[str, Any]]]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PromptError(f"{path}: {exc}") from exc
    if not isinstance(data, dict):
        raise PromptError(f"{path}: expected a JSON object")
    return data


def dump_index(index: dict[str, dict[str, dict[str, Any]]]) -> str:
    return json.dumps(index, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


def select(prompts: Sequence[Prompt], only: str | None, lang: str | None) -> list[Prompt]:
    chosen = [
        p
        for p in prompts
        if (lang is None or p.lang == lang)
        and (only is None or p.name == only or re.fullmatch(re.escape(only) + r"_\d+", p.name))
    ]
    if not chosen:
        raise PromptError(f"no prompt matches --only {only}" + (f" --lang {lang}" if lang else ""))
    return chosen


def check(prompts: Sequence[Prompt], chosen: Sequence[Prompt], out_dir: Path) -> list[str]:
    """What of ``chosen`` is missing or stale in ``out_dir``, and which files
    no prompt asks for, one line each; empty if nothing."""
    index = load_index(out_dir / "index.json")
    problems: list[str] = []
    for p in chosen:
        entry = index.get(p.lang, {}).get(p.name)
        file = out_dir / p.path
        if not file.exists():
            problems.append(f"{p.path}: missing")
        elif entry is None:
            problems.append(f"{p.path}: not in index.json")
        elif entry.get("source") != p.source:
            problems.append(f"{p.path}: stale (the manifest or the rendering changed since it was made)")
        elif entry.get("sha256") != sha256(file.read_bytes()):
            problems.append(f"{p.path}: differs from index.json (changed by hand?)")
    if len(chosen) == len(prompts):
        problems.extend(f"{path}: not in the manifest" for path in extras(prompts, out_dir))
    return problems


def extras(prompts: Sequence[Prompt], out_dir: Path) -> Iterator[Path]:
    wanted = {p.path for p in prompts}
    for lang in LANGUAGES:
        for file in sorted((out_dir / lang).glob("*.wav")):
            if file.relative_to(out_dir) not in wanted:
                yield file.relative_to(out_dir)


def missing_tools() -> list[str]:
    return sorted({PACKAGES[tool] for tool in PACKAGES if shutil.which(tool) is None})


def generate(prompts: Sequence[Prompt], chosen: Sequence[Prompt], out_dir: Path, *, prune: bool) -> int:
    """Render ``chosen``; write the files that changed and the index. Returns
    how many files were written or removed."""
    missing = missing_tools()
    for path in (OPEN_JTALK_VOICE, OPEN_JTALK_DICTIONARY):
        if not Path(path).exists():
            missing.append(path)
    if missing:
        raise PromptError(f"not installed: {', '.join(missing)} (run scripts/setup-prompts.sh)")
    index_path = out_dir / "index.json"
    index = load_index(index_path)
    changes = 0
    with tempfile.TemporaryDirectory(prefix="make-prompts-") as tmp:
        for p in chosen:
            data = render(p, Path(tmp))
            file = out_dir / p.path
            if not file.exists() or file.read_bytes() != data:
                file.parent.mkdir(parents=True, exist_ok=True)
                file.write_bytes(data)
                changes += 1
                print(f"wrote   {p.path}  {duration_ms(data):5d} ms  {p.text}")
            entry = {"text": p.text, "duration_ms": duration_ms(data), "source": p.source, "sha256": sha256(data)}
            index.setdefault(p.lang, {})[p.name] = entry
    wanted = {(p.lang, p.name) for p in prompts}
    if prune:
        for extra in list(extras(prompts, out_dir)):
            (out_dir / extra).unlink()
            changes += 1
            print(f"removed {extra}")
    # Entries whose file went away with a prompt are dropped in any case.
    index = {
        lang: {name: entry for name, entry in entries.items() if (lang, name) in wanted}
        for lang, entries in index.items()
        if lang in LANGUAGES
    }
    text = dump_index(index)
    if not index_path.exists() or index_path.read_text(encoding="utf-8") != text:
        index_path.write_text(text, encoding="utf-8")
        print(f"wrote   {index_path.name}")
    return changes


def _configured_service(path: str | None) -> dict[str, str | None]:
    """The service names in the config, so that the greeting says the
    operator's name rather than the manifest's default."""
    from ivr_auth import config, errors

    try:
        cfg = config.load(path)
    except errors.ConfigError as exc:
        raise PromptError(f"configuration: {exc}") from exc
    return {"ja": cfg.prompts.service_name_ja or None, "en": cfg.prompts.service_name_en or None}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--only", metavar="NAME", help="only this prompt (enter_code: every length)")
    parser.add_argument("--lang", choices=LANGUAGES, help="only this language")
    parser.add_argument("--check", action="store_true", help="render nothing; fail if a file is missing or stale")
    parser.add_argument("--manifest", type=Path, default=PROMPTS_DIR / "manifest.yaml")
    parser.add_argument("--out", type=Path, default=PROMPTS_DIR, help="where ja/, en/ and index.json go")
    parser.add_argument("--service-ja", metavar="NAME", help="the service name in Japanese prompts")
    parser.add_argument("--service-en", metavar="NAME", help="the service name in English prompts")
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="ivr-auth.yaml whose prompts.service_name_ja / _en name the service (default: as ivr-auth finds it)",
    )
    args = parser.parse_args(argv)
    try:
        service = _configured_service(args.config)
        service.update({lang: name for lang, name in (("ja", args.service_ja), ("en", args.service_en)) if name})
        prompts = load_manifest(args.manifest, service)
        chosen = select(prompts, args.only, args.lang)
        if args.check:
            problems = check(prompts, chosen, args.out)
            for line in problems:
                print(line, file=sys.stderr)
            if problems:
                print("make-prompts: run `make prompts` to bring them up to date", file=sys.stderr)
                return 1
            print(f"make-prompts: {len(chosen)} prompt files up to date")
            return 0
        whole = args.only is None and args.lang is None
        changes = generate(prompts, chosen, args.out, prune=whole)
    except PromptError as exc:
        print(f"make-prompts: {exc}", file=sys.stderr)
        return 1
    print(f"make-prompts: {len(chosen)} prompt files, {changes} changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
