"""The README stays a five-minute read, and the documents' links lead
somewhere: every relative link in README.md and docs/*.md names a file or
folder of this repository that exists (and, into a Markdown page, a
heading it has), and the README links to nothing outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
# Under 12 KB, whichever way a kilobyte is counted.
README_MAX_BYTES = 12_000

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)
# [text](target) and ![alt](target), with an optional "title"
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
# [label]: target
REFERENCE_LINK = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def _prose(text: str) -> str:
    """``text`` without fenced code blocks, and each code span a plain
    word: a link's text may be code, but a link inside code is not one."""
    return CODE_SPAN.sub("code", FENCE.sub("", text))


def links(page: Path) -> list[str]:
    prose = _prose(page.read_text(encoding="utf-8"))
    return INLINE_LINK.findall(prose) + REFERENCE_LINK.findall(prose)


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped
    (``_`` and ``-`` kept), spaces as ``-``."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found: set[str] = set()
    for heading in HEADING.findall(FENCE.sub("", page.read_text(encoding="utf-8"))):
        base = slug(heading)
        name, n = base, 0
        while name in found:  # a repeated heading gets -1, -2, ...
            n += 1
            name = f"{base}-{n}"
        found.add(name)
    return found


def broken(page: Path, target: str) -> str | None:
    """Why the relative link ``target`` on ``page`` leads nowhere, or None."""
    path_part, _, fragment = target.partition("#")
    if path_part.startswith("/"):
        return "absolute path (write it relative to the page)"
    resolved = (page.parent / path_part).resolve() if path_part else page
    if not resolved.is_relative_to(ROOT):
        return "outside the repository"
    if not resolved.exists():
        return "no such file"
    if fragment and resolved.suffix == ".md" and fragment not in anchors(resolved):
        return f"{resolved.relative_to(ROOT)} has no heading #{fragment}"
    return None


def test_the_pages_are_found() -> None:
    names = {page.name for page in DOCS}
    assert {"api.md", "call-flows.md", "configuration.md", "operating.md", "testing.md", "capacity.md"} <= names


def test_the_readme_is_under_12_kb() -> None:
    size = len(README.read_bytes())
    assert size < README_MAX_BYTES, f"README.md is {size} bytes; move detail into docs/"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_leads_to_something_that_exists(page: Path) -> None:
    found = links(page)
    assert found, "no links found: the link pattern no longer matches"
    problems = [
        f"{target}: {why}" for target in found if not SCHEME.match(target) and (why := broken(page, target)) is not None
    ]
    assert problems == []


def test_the_readme_links_to_nothing_outside_the_repository() -> None:
    assert [target for target in links(README) if SCHEME.match(target)] == []


@pytest.mark.parametrize("page", DOCS, ids=lambda p: p.name)
def test_every_docs_page_starts_with_its_title(page: Path) -> None:
    first = page.read_text(encoding="utf-8").splitlines()[0]
    assert re.fullmatch(r"# \S.*", first), first


def test_the_checks_catch_what_they_are_for() -> None:
    assert broken(README, "../shared/DESIGN.md") == "outside the repository"
    assert broken(README, "docs/nowhere.md") == "no such file"
    assert broken(README, "docs/api.md#no-such-heading") is not None
    assert broken(README, "docs/api.md#errors") is None
    assert slug("The `ivr-auth` commands") == "the-ivr-auth-commands"
    assert slug("Virtual handsets (SIPp)") == "virtual-handsets-sipp"
    text_with_code = _prose("see `[a](nowhere.md)` and\n```\n[b](nowhere.md)\n```\n[`c`](here.md)")
    assert INLINE_LINK.findall(text_with_code) == ["here.md"]
