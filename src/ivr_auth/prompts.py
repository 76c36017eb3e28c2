"""Every message the call flows play, by name and language.

The shipped set lives in the package (``ivr_auth/data/prompts/<lang>/<name>.wav``,
8 kHz mono signed linear, which Asterisk plays without transcoding),
rendered from the text in ``data/prompts/manifest.yaml`` by ``make prompts``;
``data/prompts/index.json`` lists what exists. An operator may drop recordings of their own into
``prompts.custom_dir`` (same layout): a file there wins, and a prompt it
lacks falls back to the shipped one, with a warning at start-up rather
than a silent call. Files are played by absolute path, so Asterisk's own
sound language does not matter.

A prompt that says the code's length exists once per length
(``enter_code_6``); a code is read out digit by digit (``digit_0`` ...),
evenly paced, the way a Japanese listener expects numbers on the phone.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from ivr_auth import config, data, errors

logger = logging.getLogger(__name__)

SHIPPED_DIR = data.PROMPTS_DIR
INDEX_FILE = "index.json"
FALLBACK_LANGUAGE = "en"
# Between the digits of a code, and between its two readings.
DIGIT_PAUSE = "silence/300ms"
READING_PAUSE = "silence/1000ms"
# The names the call flows play (a {digits} prompt as its base name).
FLOW_PROMPTS = (
    "greeting",
    "enter_code",
    "wrong_code",
    "no_input",
    "verified",
    "failed",
    "goodbye",
    "press_to_hear",
    "code_is",
    "press_1_to_repeat",
    "not_registered",
    "caller_id_withheld",
    *(f"digit_{d}" for d in range(10)),
)


@dataclass
class Library:
    """The prompt files, shipped and the operator's own, resolved by name."""

    shipped_dir: Path = SHIPPED_DIR
    custom_dir: Path | None = None
    _index: dict[str, dict[str, dict[str, object]]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        index = self.shipped_dir / INDEX_FILE
        try:
            self._index = json.loads(index.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise errors.ConfigError(
                f"the shipped prompt set is missing or broken ({index}): run `make prompts`"
            ) from exc

    @classmethod
    def from_config(cls, cfg: config.Config) -> Library:
        custom = cfg.prompts.custom_dir
        return cls(custom_dir=(Path(cfg.base_dir) / custom).resolve() if custom else None)

    def names(self, language: str) -> set[str]:
        return set(self._index.get(language, {}))

    def duration_ms(self, name: str, language: str) -> int:
        """How long the shipped prompt plays (from the index ``make prompts`` writes)."""
        entry = self._index.get(language, {}).get(name)
        if entry is None:
            raise errors.IvrAuthError(f"no prompt named {name!r} in {language!r}")
        return int(str(entry["duration_ms"]))

    def path(self, name: str, language: str) -> Path:
        """The file (without extension, as Asterisk wants it) for a prompt."""
        lang = language if name in self._index.get(language, {}) else FALLBACK_LANGUAGE
        if name not in self._index.get(lang, {}):
            raise errors.IvrAuthError(f"no prompt named {name!r}")
        if self.custom_dir is not None and (self.custom_dir / lang / f"{name}.wav").is_file():
            return self.custom_dir / lang / name
        return self.shipped_dir / lang / name

    def media(self, name: str, language: str) -> list[str]:
        return [f"sound:{self.path(name, language)}"]

    def enter_code(self, language: str, digits: int) -> list[str]:
        """The greeting, then "enter the N-digit code shown on your screen, then #"."""
        return [*self.media("greeting", language), *self.media(f"enter_code_{digits}", language)]

    def read_code(self, code: str, language: str, *, times: int = 2) -> list[str]:
        """The read-out: "your code is", then the digits one by one, ``times`` over."""
        if not code or any(c not in "0123456789" for c in code):
            raise errors.IvrAuthError("a code to read out must be digits 0-9")
        out = self.media("code_is", language)
        for _ in range(times):
            out.append(self._silence(READING_PAUSE))
            for n, digit in enumerate(code):
                if n:
                    out.append(self._silence(DIGIT_PAUSE))
                out.extend(self.media(f"digit_{digit}", language))
        return out

    def _silence(self, name: str) -> str:
        return f"sound:{self.shipped_dir / name}"

    def check(self, languages: tuple[str, ...]) -> list[str]:
        """Problems worth a warning at start-up: a language without its own
        prompts, and custom prompts that are missing (the shipped ones play)."""
        problems = []
        for language in languages:
            shipped = self.names(language)
            missing = [n for n in FLOW_PROMPTS if not any(s == n or s.startswith(f"{n}_") for s in shipped)]
            if missing:
                problems.append(f"prompts: language {language!r} has no {', '.join(missing)}; English plays instead")
            if self.custom_dir is not None:
                absent = sorted(n for n in shipped if not (self.custom_dir / language / f"{n}.wav").is_file())
                if absent:
                    shown = ", ".join(absent[:8]) + (f" and {len(absent) - 8} more" if len(absent) > 8 else "")
                    problems.append(
                        f"prompts: {self.custom_dir / language} lacks {shown}; the shipped recordings play instead"
                    )
        return problems
