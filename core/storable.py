"""Text a database can store, checked before anything is written: no NUL character (PostgreSQL
refuses it in text while SQLite keeps it, so the same request would do different things on
each) and no lone surrogate (JSON's `"\\ud800"` decodes to one, and no encoding can write it).
Imports nothing from the rest of countersign.
"""

from __future__ import annotations

from typing import Any

__all__ = ["first_unstorable", "text_problem"]


def text_problem(value: str) -> str | None:
    """Why `value` cannot be stored, or None if it can."""
    if "\x00" in value:
        return "contains a NUL character (\\u0000)"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"contains a lone surrogate ({value[exc.start]!r}): not valid Unicode"
    return None


def first_unstorable(value: Any) -> tuple[str, str] | None:
    """(path, problem) of the first text in a parsed JSON value, keys included, that cannot be
    stored; None if all can. Walked with a list, not recursion: the value may be as deep as the
    parser allowed, and a recursive walk would start that deep."""
    pending: list[tuple[str, Any]] = [("body", value)]
    while pending:
        path, item = pending.pop()
        if isinstance(item, str):
            problem = text_problem(item)
            if problem:
                return path, problem
        elif isinstance(item, dict):
            for key, child in item.items():
                problem = text_problem(key) if isinstance(key, str) else None
                if problem:
                    return f"{path} key {key!r}", problem
                pending.append((f"{path}.{key}", child))
        elif isinstance(item, list):
            pending.extend((f"{path}[{index}]", child) for index, child in enumerate(item))
    return None
