"""`printable`: what a terminal would interpret is shown as an escape, the rest as it is."""

from __future__ import annotations

import pytest

from bot.terminal import printable


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("\x1b[2J\x1b]0;pwn\x07", "\\x1b[2J\\x1b]0;pwn\\x07"),  # clear screen, window title
        ("a\rb\x00c\x7fd", "a\\rb\\x00c\\x7fd"),  # carriage return, NUL, DEL
        ("\x9b31m\x9d0;t\x9c", "\\x9b31m\\x9d0;t\\x9c"),  # C1: 8-bit CSI, OSC, ST
        ("abc\u202edcba", "abc\\u202edcba"),  # a bidirectional override
        ("line\u2028next", "line\\u2028next"),
    ],
)
def test_control_characters_are_shown_as_escapes(text: str, shown: str) -> None:
    assert printable(text) == shown


def test_text_tabs_newlines_and_unicode_are_kept() -> None:
    text = "Refund €12 to Zoë\tplease\nthanks ✓"
    assert printable(text) == text
    assert printable(text, newlines=False) == "Refund €12 to Zoë\tplease\\nthanks ✓"
    assert printable(42) == "42"
