"""The sandbox's Block Kit renderer covers every block and element type the app emits, so no
message, modal or App Home ever shows the "can't render" placeholder. (The browser test also
renders every payload here in Chromium and counts placeholders.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.sandbox.page import FILES, STATIC
from tests.sandbox.payloads import COVERED, payloads, renderers, types_used

BLOCKS_JS = STATIC / "blocks.js"


def js_table(name: str) -> set[str]:
    """The keys of `const NAME = { key: renderer, ... };` in blocks.js."""
    source = BLOCKS_JS.read_text(encoding="utf-8")
    found = re.search(rf"^  const {name} = \{{\n(.*?)^  \}};", source, re.MULTILINE | re.DOTALL)
    assert found, f"no table {name} in {BLOCKS_JS}"
    return set(re.findall(r"^\s+(\w+):", found.group(1), re.MULTILINE))


def test_the_tables_are_read_from_the_renderer() -> None:
    assert {"header", "section", "context", "divider", "actions", "input"} <= js_table("BLOCKS")
    assert {"button", "mrkdwn", "plain_text", "plain_text_input", "number_input", "static_select"} <= js_table(
        "ELEMENTS"
    )


def test_every_renderer_of_the_app_is_enumerated() -> None:
    assert renderers() == COVERED, "add the new renderer to tests/sandbox/payloads.py, so its blocks are checked"


def test_every_block_and_element_type_the_app_emits_is_rendered() -> None:
    blocks, elements = types_used(payloads())
    # The enumeration itself must see what the app really sends, or this test proves nothing.
    assert {"header", "section", "context", "divider", "actions", "input"} <= blocks
    assert {"button", "mrkdwn", "plain_text", "plain_text_input", "number_input", "static_select"} <= elements
    assert blocks <= js_table("BLOCKS"), f"blocks the sandbox can't render: {blocks - js_table('BLOCKS')}"
    assert elements <= js_table("ELEMENTS"), f"elements the sandbox can't render: {elements - js_table('ELEMENTS')}"


@pytest.mark.parametrize("block_type", sorted(js_table("BLOCKS")))
def test_every_listed_block_renderer_exists(block_type: str) -> None:
    source = BLOCKS_JS.read_text(encoding="utf-8")
    renderer = re.search(rf"^    {block_type}: (\w+|\(\) => .+),$", source, re.MULTILINE)
    assert renderer, block_type
    name = renderer.group(1)
    assert name.startswith("()") or re.search(rf"function {name}\(", source), f"{block_type} → {name} is not defined"


def test_the_page_serves_only_its_own_files_without_third_party_code() -> None:
    names = {name for name, _ in FILES.values()}
    assert names == {p.name for p in Path(STATIC).iterdir()}
    for name in names:
        text = (STATIC / name).read_text(encoding="utf-8")
        assert "http://" not in text.replace("http://127.0.0.1", "") and "https://" not in text, name
        assert ".innerHTML" not in text and "insertAdjacentHTML" not in text and "eval(" not in text, name


def test_every_emoji_the_app_writes_is_drawn() -> None:
    """Slack draws `:name:` as its emoji; the sandbox draws those in mrkdwn.js's table and leaves
    any other as text, so each one the app's code writes must be there."""
    source = (STATIC / "mrkdwn.js").read_text(encoding="utf-8")
    table = re.search(r"const EMOJI = \{(.*?)\};", source, re.DOTALL)
    assert table, "no EMOJI table in mrkdwn.js"
    drawn = set(re.findall(r"(\w+):", table.group(1)))
    root = Path(__file__).resolve().parents[2]
    written = {
        name
        for package in ("agent", "approvals", "bot", "escalations")
        for path in (root / package).rglob("*.py")
        for name in re.findall(r"(?<![\w:]):([a-z][a-z0-9_]+):(?![\w:])", path.read_text(encoding="utf-8"))
    }
    assert {"white_check_mark", "rotating_light"} <= written  # the search sees the app's texts
    assert written - drawn == set()
