"""The README's command-line section, run as printed against the demo's data.

Its first code block is run line by line, each command in its own shell (`bash -c`, so its
pipes work) in a folder laid out like the checkout (`.venv` and `examples` linked to this
one's) beside a running demo whose database is that folder's `countersign-demo.db`: exactly
what a newcomer runs after `make demo`. The one placeholder, `tsk_…`, becomes the id of a
task the demo ran. Each must exit 0 and print what it is for. The second block ("beyond the
demo") lists commands that need what the demo lacks; each must be one this file knows is
tested elsewhere, so a command added to either block needs a line here.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bot.demo import Demo
from bot.sandbox.workspace import JsonDict
from tests.sandbox.harness import running_demo
from tests.sandbox.test_page import eventually

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
SECTION = "## Using the command line"
RILEY, AVERY = "U0REQUESTER", "U0APPROVER"


def code_blocks(readme: str) -> list[list[str]]:
    """The section's ```sh blocks, each as its command lines (comments and continuations dropped)."""
    section = readme.split(SECTION, 1)[1].split("\n### ", 1)[0].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL)
    return [
        [re.sub(r"\s+#\s.*$", "", line).strip() for line in block.splitlines() if not line.lstrip().startswith("#")]
        for block in blocks
    ]


def _json_lines(count: int) -> Callable[[str], bool]:
    def check(out: str) -> bool:
        lines = out.splitlines()
        return len(lines) == count and all(
            {"seq", "kind", "actor", "hash"} <= json.loads(line).keys() for line in lines
        )

    return check


# What each command of the first block must print (a regex, or a check of the whole output).
PRINTS: dict[str, str | Callable[[str], bool]] = {
    "countersign config check": r"^ok$",
    "countersign db upgrade": r"database at revision \d{4}",
    "countersign audit verify": r"^ok: \d+ events, head \d+:[0-9a-f]{64}",
    "countersign audit export": _json_lines(3),
    "countersign audit publish-head": r"^(published head|nothing to publish: head) \d+:[0-9a-f]{64}",
    "countersign trace": r"^task tsk_\w+ · refund · succeeded (.|\n)*decision.approve +U0APPROVER(.|\n)*total: 2 model",
    "countersign usage": r"usage on \d{4}-\d{2}-\d{2} \(UTC\)\nrefund +scripted +\d+ calls",
    "countersign autonomy show": r"^refund: hitl \(ceiling hotl\)\n  evidence: 1 outcomes(.|\n)*next level: 1 of 6",
    "countersign autonomy set": r"^refund: hotl \(set by U0ADMIN\)",
    "countersign task submit": r"^tsk_\w+$",
    "countersign prune": r"the audit ledger is kept",
}
# Commands of the second block, and where each is tested instead.
ELSEWHERE = {
    "countersign demo": "tests/sandbox/test_tour.py (the demo itself) and tests/bot/test_cli_startup.py",
    "countersign audit verify --against": "tests/approvals/test_ledger.py",
    "countersign eval": "tests/agent/test_evaluation.py and tests/bot/test_cli_eval.py (needs a model)",
    "countersign api-client": "tests/bot/test_cli_api.py (needs COUNTERSIGN_VAULT_KEYS)",
    "countersign actions resolve": "tests/bot/test_slack_unknown.py (needs an `unknown` action)",
    "countersign mcp-gate": "tests/client (needs an MCP server)",
    "countersign hook claude-code": "tests/client (reads Claude Code's hook JSON)",
    "countersign approvers": "tests/bot/test_slack_fatigue.py (needs decisions by several people)",
    "countersign rules": "tests/bot/test_slack_rules.py (needs a rule an admin made in Slack)",
}


def _card(demo: Demo, channel: str, text: str) -> tuple[str, str, JsonDict] | None:
    """(ts, block_id, approve button) of the card about `text`, once it is posted."""
    for message in demo.emulator.messages(channel):
        for block in message.blocks or []:
            approve = [e for e in block.get("elements", []) if e.get("action_id") == "approve"]
            if approve and text in json.dumps(message.blocks):
                return message.ts, str(block["block_id"]), approve[0]
    return None


def _said(demo: Demo, channel: str, text: str) -> bool:
    return any(text in m.text or text in json.dumps(m.blocks or []) for m in demo.emulator.messages(channel))


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A folder like the checkout, where a demo runs with one refund approved: (folder, its task id)."""
    folder = tmp_path_factory.mktemp("checkout")
    for name in (".venv", "examples"):
        (folder / name).symlink_to(ROOT / name)
    with running_demo(folder, database="countersign-demo.db") as demo:
        actor = demo.page.actor
        actor.compose(RILEY, "C0PAYMENTS", "/countersign run refund Refund order 1001, it arrived broken")
        ts, block_id, approve = eventually(lambda: _card(demo, "C0PAYMENTS", "order 1001"), 30)
        actor.click(AVERY, {"channel": "C0PAYMENTS", "ts": ts}, block_id, approve)
        eventually(lambda: _said(demo, "C0PAYMENTS", "The refund of order 1001 succeeded"), 30)
        eventually(lambda: _said(demo, "C0PAYMENTS", "Finished with order 1001"), 30)
        found = re.search(r"tsk_\w+", json.dumps(demo.emulator.message("C0PAYMENTS", ts).blocks))
        assert found is not None
        yield folder, found.group()


EACH_PART = (
    'parts=("${PIPESTATUS[@]}"); '
    'for part in "${parts[@]}"; do [ "$part" = 0 ] || { echo "exits: ${parts[*]}" >&2; exit "$part"; }; done'
)


def readme_environment() -> dict[str, str]:
    """This process's environment without what the README sets, and without the test's venv on PATH."""
    ours = {"DATABASE_URL", "COUNTERSIGN_CONFIG", "PYTHONPATH", "VIRTUAL_ENV"}
    environment = {k: v for k, v in os.environ.items() if k not in ours and not k.startswith("COUNTERSIGN")}
    environment["PATH"] = os.pathsep.join(p for p in environment["PATH"].split(os.pathsep) if ".venv" not in p)
    return environment


def test_the_readme_command_line_section_runs_as_printed_against_the_demo(checkout: tuple[Path, str]) -> None:
    folder, task_id = checkout
    runnable, *beyond = code_blocks((ROOT / "README.md").read_text(encoding="utf-8"))
    environment = readme_environment()
    ran = set()
    for line in runnable:
        if line.startswith((". ", "export ")):  # sets up the shell: carried to the next commands
            done = subprocess.run(
                ["bash", "-c", f"{line} && env -0"], cwd=folder, env=environment, capture_output=True, check=True
            )
            environment = dict(item.split("=", 1) for item in done.stdout.decode().split("\0") if "=" in item)
            continue
        command = line.replace("tsk_…", task_id)
        assert "…" not in command, f"a placeholder the test cannot fill: {line}"
        # Every part of a pipeline must exit 0 (`| head` too); which did not is said.
        checked = f"{command}\n{EACH_PART}"
        done = subprocess.run(["bash", "-c", checked], cwd=folder, env=environment, capture_output=True, timeout=120)
        out = done.stdout.decode()
        assert done.returncode == 0, f"{line}\nexit {done.returncode}\n{out}\n{done.stderr.decode()}"
        assert "Traceback" not in done.stderr.decode(), line
        key = next((k for k in sorted(PRINTS, key=len, reverse=True) if command.startswith(k)), None)
        assert key is not None, f"the test does not know what {line!r} should print: add it to PRINTS"
        expected = PRINTS[key]
        assert expected(out) if callable(expected) else re.search(expected, out, re.MULTILINE), f"{line}\n{out}"
        ran.add(key)
    assert ran == set(PRINTS), f"README commands gone from the section: {set(PRINTS) - ran}"
    assert environment["DATABASE_URL"] == "sqlite:///countersign-demo.db"
    assert not (folder / "countersign.db").exists()  # nothing fell back to the default database
    for line in [line for block in beyond for line in block]:
        assert any(line.startswith(known) for known in ELSEWHERE), f"{line!r}: say in ELSEWHERE where it is tested"


def test_reading_commands_on_a_missing_or_empty_database_say_what_to_do(tmp_path: Path) -> None:
    """No traceback, exit 1, and no empty database file left behind."""
    environment = {**readme_environment(), "DATABASE_URL": f"sqlite:///{tmp_path / 'nothing-here.db'}"}
    for command in (["trace", "tsk_x"], ["audit", "verify"], ["usage"], ["audit", "export"]):
        done = subprocess.run(
            [str(ROOT / ".venv/bin/countersign"), *command], env=environment, capture_output=True, text=True
        )
        assert done.returncode == 1, command
        assert f"no database at {tmp_path / 'nothing-here.db'}" in done.stderr, done.stderr
        assert "countersign db upgrade" in done.stderr and "Traceback" not in done.stderr
        assert not (tmp_path / "nothing-here.db").exists()
    (tmp_path / "empty.db").touch()  # as an older version left one
    environment["DATABASE_URL"] = f"sqlite:///{tmp_path / 'empty.db'}"
    done = subprocess.run(
        [str(ROOT / ".venv/bin/countersign"), "trace", "tsk_x"], env=environment, capture_output=True, text=True
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "has no countersign tables: run `countersign db upgrade`" in done.stderr


def test_an_export_whose_reader_left_exits_0(checkout: tuple[Path, str]) -> None:
    """`| true` leaves before the export writes a byte: every write meets a closed pipe."""
    folder, _ = checkout
    environment = {**readme_environment(), "DATABASE_URL": "sqlite:///countersign-demo.db"}
    export = f"{ROOT / '.venv/bin/countersign'} audit export --format jsonl"
    for reader in ("true", "head -1"):
        done = subprocess.run(
            ["bash", "-o", "pipefail", "-c", f"{export} | {reader}"],
            cwd=folder,
            env=environment,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, (reader, done.stderr)
        assert done.stderr == "", reader
