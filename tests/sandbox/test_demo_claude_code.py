"""The demo's external action: a scripted Claude Code session asks, through the real hook and
the actions API, for a `Bash` command (a key in an environment variable) and an `Edit`. Their
cards wait in #coding, the command as code with the key masked, the edit as a diff; Ada's
approval through signed clicks goes back to Claude Code as `allow`, and the card says so."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from bot.demo import Demo
from bot.sandbox.claude_code import DEMO_KEY
from tests.sandbox.harness import running_demo
from tests.sandbox.test_page import eventually, post, state

ADA, CODING = "U0ADMIN", "C0CODING"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    with running_demo(tmp_path_factory.mktemp("claude-code")) as running:
        yield running


def cards(demo: Demo) -> list[dict[str, Any]]:
    return [m for m in state(demo, ADA)["messages"].get(CODING, []) if m.get("blocks")]


def section(message: dict[str, Any], block_id: str) -> str:
    return str(next(b for b in message["blocks"] if b.get("block_id") == block_id)["text"]["text"])


def test_claude_codes_calls_wait_in_coding_as_code_and_diff_with_the_key_masked(demo: Demo) -> None:
    waiting = eventually(lambda: len(cards(demo)) == 2 and cards(demo))
    assert DEMO_KEY not in json.dumps(state(demo, ADA))
    [bash] = [m for m in waiting if "*Command* (`Bash`)" in json.dumps(m["blocks"])]
    assert section(bash, "change") == (
        "*Command* (`Bash`)\n```\nexport STRIPE_API_KEY=sk_live_…••••\n"
        "./scripts/deploy.sh --env production --migrate\n```"
    )
    assert "Claude Code wants to run Bash in /home/riley/shop" in section(bash, "proposal")
    [edit] = [m for m in waiting if m is not bash]
    diff = section(edit, "change")
    assert diff.startswith("*Edit* (`Edit`) · `/home/riley/shop/shop/settings.py`\n```\n@@ -1,3 +1,3 @@\n")
    assert "-DEBUG = True\n-PAYMENTS_TIMEOUT_S = 5" in diff and "+DEBUG = False\n+PAYMENTS_TIMEOUT_S = 30" in diff

    [actions] = [b for b in edit["blocks"] if b["type"] == "actions"]
    approve = next(e for e in actions["elements"] if e["action_id"] == "approve")
    where = {"channel": CODING, "ts": edit["ts"]}
    click = {"user": ADA, "where": where, "block_id": actions["block_id"], "element": approve}
    assert post(demo, "/api/click", click) == (200, {"ok": True})

    def handed_over() -> Any:
        [now] = [m for m in cards(demo) if m["ts"] == edit["ts"]]
        return "Handed to Claude Code" in json.dumps(now["blocks"]) and now

    assert f"<@{ADA}>" in json.dumps(eventually(handed_over)["blocks"])
    [still] = [m for m in cards(demo) if m["ts"] == bash["ts"]]
    assert any(b["type"] == "actions" for b in still["blocks"])  # the command still waits for a person
