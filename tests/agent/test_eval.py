"""`countersign eval` on a task type with 30 decided actions, built through the normal flow (the
real SDK against the fake Messages API, the real gate and decisions): a scripted candidate that
agrees on 25 is reported as 25/30 with its Wilson bounds, beside the current version's record,
with the 5 that differ and their diffs; no tool runs and nothing but the ledger's `eval.ran`
event is written; `autonomy set` then shows that eval.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from approvals.decisions import decide
from approvals.graduation import wilson_lower, wilson_upper
from bot.cli import main
from core.config import load_config
from core.models import Action, AuditEvent, Task
from tests.agent.harness import ALICE, BOB, Stack, build_stack
from tests.approvals import shop_tools
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.clock import FrozenClock

CONFIG = """\
slack: {approvals_channel: C0APPROVALS, admins: [U0ADMIN]}
tools: {modules: [tests.approvals.shop_tools]}
task_types:
  refund:
    instructions: You handle refund requests for the shop.
    tools: [lookup_order, issue_refund]
    autonomy: hitl
    approvers: [U0ALICE, U0BOB]
"""
CANDIDATE = "claude-haiku-4-5"
APPROVED, EDITED, REJECTED = range(1, 23), range(23, 27), range(27, 31)  # orders 1..30


def _order(body: dict[str, Any]) -> int:
    found = re.search(r"order (\d+)", json.dumps(body["messages"][0]))
    assert found is not None
    return int(found.group(1))


def _refund(order: int, amount: int) -> dict[str, Any]:
    call = {"order_id": str(order), "amount_cents": amount, "rationale": "arrived broken", "confidence": 0.9}
    return {"content": [{"type": "tool_use", "name": "issue_refund", "input": call}]}


def _lookup(order: int) -> dict[str, Any]:
    call = {"order_id": str(order), "rationale": "check it first", "confidence": 0.9}
    return {"content": [{"type": "tool_use", "name": "lookup_order", "input": call}]}


def _current_version(body: dict[str, Any]) -> dict[str, Any]:
    if "tool_result" in json.dumps(body["messages"][-1]):
        return {"content": [{"type": "text", "text": "Done."}]}
    return _refund(_order(body), 500)


def _candidate(body: dict[str, Any]) -> dict[str, Any]:
    """Agrees on 25 of 30: 21 approved as drafted, 2 of the 4 edited, 2 of the 4 rejected."""
    assert body["model"] == CANDIDATE
    order = _order(body)
    if order == 22 or order in (29, 30):
        return _lookup(order)  # 22: another tool than approved; 29, 30: not the rejected call again
    if order in (23, 24):
        return _refund(order, 400)  # what people edited it to
    return _refund(order, 500)  # 25, 26: the amount people edited away; 27, 28: rejected again


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = tmp_path / "countersign.yml"
    path.write_text(CONFIG)
    return path


@pytest.fixture
def decided(sessions: sessionmaker[Session], fake_anthropic: FakeAnthropic, config_path: Path) -> Stack:
    """30 refund tasks through the normal flow: 22 approved as drafted, 4 edited, 4 rejected."""
    stack = build_stack(sessions, fake_anthropic, load_config(config_path), FrozenClock())
    fake_anthropic.respond_with(_current_version)
    for order in range(1, 31):
        task_id = stack.submit(f"Please refund order {order}, it arrived broken")
        stack.drive()
        action = stack.pending(task_id)
        stack.clock.advance(10)  # read before deciding
        if order in APPROVED:
            stack.approve(action, ALICE)
        elif order in EDITED:
            edited = {"order_id": str(order), "amount_cents": 400}
            decide(
                stack.sessions,
                stack.clock,
                lambda s, a=action, p=edited: stack.decisions.approve_with_edits(s, a.public_id, BOB, a.params_hash, p),
            )
        else:
            stack.reject(action, "not eligible for a refund")
        stack.drive()
        assert stack.task(task_id).state == "succeeded"
    fake_anthropic.respond_with(_candidate)
    return stack


def _counts(stack: Stack) -> tuple[int, int, int]:
    with stack.sessions() as session:
        return (
            session.scalar(select(func.count(Action.id))) or 0,
            session.scalar(select(func.count(Task.id))) or 0,
            sum(shop_tools.CALLS.values()),
        )


def test_eval_reports_25_of_30_with_bounds_and_the_5_diffs_and_runs_no_tool(
    decided: Stack, db_url: str, config_path: Path
) -> None:
    env = {"DATABASE_URL": db_url, "COUNTERSIGN_CONFIG": str(config_path), **decided.fake.env}
    before, asked = _counts(decided), len(decided.fake.requests)

    result = CliRunner().invoke(main, ["eval", "refund", "--model", CANDIDATE, "--last", "30", "--json"], env=env)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)

    assert _counts(decided) == before  # no tool ran, no action or task was made
    assert len(decided.fake.requests) - asked == 30
    assert report["agreement"] == {
        "agreed": 25,
        "of": 30,
        "lower": round(wilson_lower(25, 30), 4),
        "upper": round(wilson_upper(25, 30), 4),
    }
    assert (report["agreement"]["lower"], report["agreement"]["upper"]) == (0.6644, 0.9266)
    assert report["current"] == {"agreed": 22, "of": 30, "lower": 0.5555, "upper": 0.8582}
    assert report["exact_params"]["agreed"] == 23 and report["exact_params"]["of"] == 26
    assert report["same_tool"]["agreed"] == 25 and report["rejected_again"] == {
        "agreed": 2,
        "of": 4,
        "lower": round(wilson_lower(2, 4), 4),
        "upper": round(wilson_upper(2, 4), 4),
    }
    assert report["input_tokens"] > 0 and report["cost_usd"] > 0
    differing = {int(item["expected"]["order_id"]): item for item in report["differing"]}
    assert sorted(differing) == [22, 25, 26, 27, 28]
    assert differing[22]["diff"] == {"tool": {"people": "issue_refund", "candidate": "lookup_order"}}
    assert differing[25]["diff"] == {"amount_cents": {"people": 400, "candidate": 500}}
    assert differing[25]["verdict"] == "edited"
    assert differing[27]["verdict"] == "rejected"
    assert differing[27]["diff"] == {
        "rejected_again": {"tool": "issue_refund", "params": {"order_id": "27", "amount_cents": 500}}
    }

    # Replayed as the current version saw each request: its opening message, the type's tools.
    replayed = decided.fake.requests[-1]
    assert replayed.body["model"] == CANDIDATE and len(replayed.messages) == 1
    assert {tool["name"] for tool in replayed.tools} == {"lookup_order", "issue_refund"}

    with decided.sessions() as session:
        [ran] = session.scalars(select(AuditEvent).where(AuditEvent.kind == "eval.ran")).all()
    assert (ran.task_type, ran.actor) == ("refund", "system")
    assert ran.data is not None and ran.data["agreement"]["agreed"] == 25 and ran.data["model"] == CANDIDATE
    assert "25/30 agree" in (ran.note or "")

    # The human-readable form lists the same 5.
    text = CliRunner().invoke(main, ["eval", "refund", "--model", CANDIDATE, "--last", "30"], env=env)
    assert text.exit_code == 0, text.output
    assert "agreement      25/30  (Wilson 95% 0.664-0.927)" in text.output
    assert "differing (5):" in text.output
    assert text.output.count("(rejected)") == 2 and text.output.count("(edited)") == 2


def test_autonomy_set_shows_the_latest_eval_of_the_version_it_confirms(
    decided: Stack, db_url: str, config_path: Path
) -> None:
    env = {"DATABASE_URL": db_url, "COUNTERSIGN_CONFIG": str(config_path), **decided.fake.env}
    instructions = config_path.parent / "instructions.txt"
    instructions.write_text("You handle refund requests for the shop. Look an order up first when unsure.")
    args = ["eval", "refund", "--model", CANDIDATE, "--instructions", str(instructions), "--by", "U0ADMIN"]
    assert CliRunner().invoke(main, args, env=env).exit_code == 0
    set_args = ["autonomy", "set", "refund", "hitl", "--by", "U0ADMIN", "--reason", "reviewed"]

    before = CliRunner().invoke(main, set_args, env=env)
    assert before.exit_code == 0, before.output
    assert "of another version (not the one configured now)" in before.output

    # The change is made: the same model and instructions in the config.
    changed = CONFIG.replace(
        "    instructions: You handle refund requests for the shop.\n",
        f"    instructions: {instructions.read_text()}\n    model: {CANDIDATE}\n",
    )
    config_path.write_text(changed)
    after = CliRunner().invoke(main, set_args, env=env)
    assert after.exit_code == 0, after.output
    assert "latest eval" in after.output and "of this version" in after.output and "agree" in after.output


def test_eval_of_an_unknown_type_or_one_without_decisions_says_so(
    sessions: sessionmaker[Session], db_url: str, config_path: Path, fake_anthropic: FakeAnthropic
) -> None:
    env = {"DATABASE_URL": db_url, "COUNTERSIGN_CONFIG": str(config_path), **fake_anthropic.env}
    unknown = CliRunner().invoke(main, ["eval", "refnud"], env=env)
    assert unknown.exit_code != 0 and "unknown task type 'refnud'" in unknown.output
    stranger = CliRunner().invoke(main, ["eval", "refund", "--by", "not-a-user"], env=env)
    assert stranger.exit_code != 0 and "--by must be a Slack user id" in stranger.output
    empty = CliRunner().invoke(main, ["eval", "refund"], env=env)
    assert empty.exit_code != 0 and "no decided actions" in empty.output
    assert fake_anthropic.requests == []
