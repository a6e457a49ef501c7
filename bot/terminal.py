"""Stored text made safe to print on a terminal.

Request text, model replies, notes and tool output come from people and models we do not
trust. Printed raw, an escape sequence in them can clear the screen, retitle the window,
hide lines or forge output (`\\x1b[2J`, `\\x1b]0;…\\x07`, a bare `\\r`). Every CLI command that
prints stored text passes it through `printable`, which shows each control character as a
visible escape (`\\x1b`), so what was sent stays readable and nothing is interpreted.
"""

from __future__ import annotations

import re

# C0 controls but tab and newline, DEL, C1 controls (8-bit CSI, OSC…), and the Unicode
# line separators and bidirectional overrides that reorder or break what a line shows.
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NEWLINE_KEPT = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r"}


def printable(text: object, *, newlines: bool = True) -> str:
    """`text` with control characters shown as escapes (`\\x1b`, `\\u202e`); tabs stay, and
    newlines too unless `newlines` is False (one record per line must stay one line)."""
    return (_NEWLINE_KEPT if newlines else _CONTROL).sub(_escaped, str(text))


def _escaped(found: re.Match[str]) -> str:
    if found[0] in _NAMED:
        return _NAMED[found[0]]
    code = ord(found[0])
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
