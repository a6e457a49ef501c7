"""The CLI starts without importing the heavy SDKs: `anthropic` (seconds of CPU) only when a
Claude model is built, Slack's only in the commands that talk to Slack. Each check runs in a
fresh interpreter, since this test process has long imported everything."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# prometheus_client too: `serve --workers` must set its multiprocess directory before its first import.
HEAVY = ("anthropic", "slack_bolt", "slack_sdk", "waitress", "gunicorn", "apscheduler", "prometheus_client")


def _imported_after(code: str) -> list[str]:
    """Which of HEAVY a fresh interpreter has imported after running `code`."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    loaded: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return loaded


def test_importing_the_cli_imports_no_heavy_sdk() -> None:
    assert _imported_after("import bot.cli") == []


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["serve", "--help"],
        ["demo", "--help"],
        ["secrets", "--help"],
        ["usage", "--help"],
        ["actions", "--help"],
    ],
)
def test_help_imports_no_heavy_sdk(args: list[str]) -> None:
    code = f"from bot.cli import main\nmain({args!r}, standalone_mode=False)"
    assert _imported_after(code) == []


def test_building_claude_is_what_imports_anthropic() -> None:
    code = (
        "from pydantic import SecretStr\n"
        "from bot.runtime import build_model\n"
        "from core.settings import Settings\n"
        "build_model(Settings(anthropic_api_key=SecretStr('sk-test'), model_script=None))"
    )
    assert "anthropic" in _imported_after(code)


def test_demo_help_shows_the_demos_own_database() -> None:
    from click.testing import CliRunner

    from bot.cli import main
    from bot.demo import DATABASE_URL

    shown = CliRunner().invoke(main, ["demo", "--help"]).output
    # The help text names the default without importing bot.demo; it must be the one used.
    assert DATABASE_URL in "".join(shown.split())
