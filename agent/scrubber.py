"""Known secret values taken out of text and JSON-like data before anything is stored or
shown: tool output, error messages, traces."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote


class Scrubber:
    """Replaces known secret values with `[redacted:NAME]` in text and in JSON-like data.

    Besides each value as is, it catches the forms a value takes inside a `repr`, a JSON
    string and a URL, the usual ways it ends up in an error message or a returned object.
    """

    def __init__(self, secrets: Mapping[str, str] | Iterable[tuple[str, str]]) -> None:
        """`secrets`: values by name, or (name, value) pairs when one name has several values."""
        pairs = secrets.items() if isinstance(secrets, Mapping) else secrets
        forms: dict[str, str] = {}
        for name, value in pairs:
            if value:
                for form in (value, repr(value)[1:-1], json.dumps(value)[1:-1], quote(value, safe="")):
                    forms.setdefault(form, f"[redacted:{name}]")
        # Longest first, so a value that contains another is replaced whole.
        self._forms = sorted(forms.items(), key=lambda item: len(item[0]), reverse=True)

    def __repr__(self) -> str:
        return f"Scrubber(forms={len(self._forms)})"

    def text(self, value: str) -> str:
        for form, mask in self._forms:
            value = value.replace(form, mask)
        return value

    def data(self, value: Any) -> Any:
        """`value` with every string in it (keys too) scrubbed; other values as they are."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {self.data(key): self.data(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self.data(item) for item in value]
        return value
