"""docs/architecture.md's walk of one action names files and functions that exist, so a rename
that forgets the doc fails here instead of misleading the next reader."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WALK = "## One action, from a click to the tool call and the card update"
PACKAGES = ("agent", "approvals", "bot", "core", "escalations")


def _walk() -> str:
    text = (ROOT / "docs" / "architecture.md").read_text()
    start = text.index(WALK)
    end = text.find("\n## ", start + len(WALK))
    return text[start : end if end != -1 else None]


def _source() -> str:
    return "\n".join(path.read_text() for package in PACKAGES for path in (ROOT / package).rglob("*.py"))


def test_every_file_the_walk_names_exists() -> None:
    files = set(re.findall(r"`([a-z_/]+\.py)", _walk()))
    assert len(files) >= 15, files
    assert sorted(name for name in files if not (ROOT / name).is_file()) == []


def test_every_function_and_class_the_walk_names_is_defined() -> None:
    """Names called in the walk (`name(`), private ones (`_claim`) and classes (`Click`) are
    defined in our packages, or imported into them (`SlackRequestHandler`)."""
    walk, source = _walk(), _source()
    called = set(re.findall(r"`(?:[A-Za-z_]\w*\.)*([A-Za-z_]\w*)\(", walk))
    named = {
        part
        for token in re.findall(r"`([A-Za-z_][\w.]*)`", walk)
        for part in token.split(".")
        if part.startswith("_") or (part[:1].isupper() and not part.isupper())
    }
    names = called | named
    assert len(names) >= 30, names
    defined = r"^\s*(?:def|class) {0}\b|^\s*{0}\s*[:=]|^from \S+ import .*\b{0}\b"
    undefined = sorted(n for n in names if not re.search(defined.format(re.escape(n)), source, re.M))
    assert undefined == []
