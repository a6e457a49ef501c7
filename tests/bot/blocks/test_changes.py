"""A coding agent's tool call on its card: a command as code, an edit as a diff, a written file
as added lines; masked, cut to whole lines within Slack's limits, valid Block Kit."""

from __future__ import annotations

from dataclasses import replace

from bot.blocks.card import approval_card, card_text
from bot.blocks.changes import change_blocks, change_of, diff_lines
from tests.bot.blocks.checks import assert_message_valid, block, block_text
from tests.bot.blocks.factories import make_card

STRIPE = "sk_live_DEMO0000notarealkey00000"


def test_a_command_is_a_code_block_and_not_a_field_again() -> None:
    params = {"command": "rm -rf build/ && make", "description": "Clean and build"}
    change = change_of("Bash", params)
    assert change is not None and change.kind == "command" and change.shown == ("command",)
    card = make_card(tool="Bash", params=params, change=change)
    blocks = approval_card(card)
    assert_message_valid(card_text(card), blocks)
    assert block_text(blocks, "change") == "*Command* (`Bash`)\n```\nrm -rf build/ &amp;&amp; make\n```"
    fields = [f["text"] for f in block(blocks, "params")["fields"]]
    assert fields == ["*Description*\nClean and build"]


def test_a_command_alone_leaves_only_the_exact_json() -> None:
    card = make_card(tool="Bash", params={"command": "ls"}, change=change_of("Bash", {"command": "ls"}))
    blocks = approval_card(card)
    ids = [b["block_id"] for b in blocks if b["block_id"].startswith(("params", "change"))]
    assert ids == ["change", "params_json"]


def test_an_edit_is_a_diff_of_old_to_new() -> None:
    params = {
        "file_path": "/srv/shop/settings.py",
        "old_string": "A = 1\nDEBUG = True\nB = 2",
        "new_string": "A = 1\nDEBUG = False\nB = 2",
        "replace_all": True,
    }
    change = change_of("Edit", params)
    assert change is not None and change.path == "/srv/shop/settings.py"
    assert change.lines == ("@@ -1,3 +1,3 @@", " A = 1", "-DEBUG = True", "+DEBUG = False", " B = 2")
    text = block_text(change_blocks(change), "change")
    assert text.startswith("*Edit* (`Edit`) · `/srv/shop/settings.py` · _every occurrence_\n```\n@@")
    blocks = approval_card(make_card(tool="Edit", params=params, change=change))
    fields = [f["text"] for f in block(blocks, "params")["fields"]]
    assert fields == ["*Replace all*\nyes"]


def test_a_multi_edit_shows_each_edit_and_a_write_its_lines() -> None:
    multi = change_of(
        "MultiEdit",
        {
            "file_path": "a.py",
            "edits": [{"old_string": "x", "new_string": "y"}, {"old_string": "p", "new_string": "q"}],
        },
    )
    assert multi is not None
    hunk = "@@ -1,1 +1,1 @@"
    assert multi.lines == ("@@ edit 1 of 2 @@", hunk, "-x", "+y", "@@ edit 2 of 2 @@", hunk, "-p", "+q")
    write = change_of("Write", {"file_path": "a.py", "content": "one\ntwo"})
    assert write is not None
    assert (write.kind, write.lines, write.shown) == ("write", ("+one", "+two"), ("file_path", "content"))


def test_other_shapes_have_no_change() -> None:
    assert change_of("mcp__github__create_issue", {"owner": "acme", "title": "Flaky"}) is None
    assert change_of("Edit", {"file_path": "a.py", "old_string": 1, "new_string": "x"}) is None


def test_a_changed_secret_still_shows_as_a_changed_line_masked() -> None:
    lines = diff_lines(f"KEY = '{STRIPE}'\nX = 1", "KEY = 'sk_live_DEMO1111anotherfakekey1111'\nX = 1")
    assert lines == ("@@ -1,2 +1,2 @@", "-KEY = 'sk_live_…••••'", "+KEY = 'sk_live_…••••'", " X = 1")
    command = change_of("Bash", {"command": f"export STRIPE_API_KEY={STRIPE}\n./deploy.sh"})
    assert command is not None and command.lines == ("export STRIPE_API_KEY=sk_live_…••••", "./deploy.sh")


def test_a_long_change_is_cut_to_whole_lines_saying_how_many_more() -> None:
    content = "\n".join(f"line {n}: " + "x" * 60 for n in range(200))
    change = change_of("Write", {"file_path": "big.txt", "content": content})
    assert change is not None
    text = block_text(change_blocks(change), "change")
    assert len(text) <= 3000
    shown = text.count("\n+line ")
    assert text.endswith(f"```\n_… {200 - shown} more lines_") and 20 < shown < 200
    one_line = change_of("Bash", {"command": "echo " + "y" * 5000})
    assert one_line is not None
    assert "…" in block_text(change_blocks(one_line), "change")
    card = make_card(tool="Write", params={"file_path": "big.txt", "content": content}, change=change)
    assert_message_valid(card_text(card), approval_card(card))


def test_a_masked_card_says_its_hash_is_the_real_values() -> None:
    card = make_card(params={"token": "••••"}, masked=True)
    assert "of the real values (:lock: secrets masked here)" in block_text(approval_card(card), "params_json")
    assert "secrets masked" not in block_text(approval_card(replace(card, masked=False)), "params_json")
