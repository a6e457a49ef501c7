"""The README's "More to try in the sandbox" entries 5 (standing rules), 6 (Undo a run) and 7
(Claude Code asks, Slack answers), walked in Chromium as written: each entry is read from
README.md, its `/…` and `@countersign …` commands typed as printed, its `countersign …` command
lines run by bash beside the running demo with the variables of "Using the command line" (as
`tests/sandbox/test_cli_readme.py` runs them), and what it says the person reads ("…") asserted.

One demo serves the module; each entry's walk touches only its own task types, so the walks do
not depend on each other's order. Waiting is never slept through: the app's clock is moved past
a veto window, a careful reading or Undo's hour.
"""

from __future__ import annotations

import logging
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.demo import Demo
from bot.sandbox.claude_code import DEMO_KEY
from tests.fakes.clock import ShiftedClock
from tests.sandbox.browser import need_browser
from tests.sandbox.harness import running_demo
from tests.sandbox.test_cli_readme import code_blocks, readme_environment
from tests.sandbox.test_page import eventually
from tests.sandbox.test_tour import (
    ADA,
    AVERY,
    RILEY,
    Tour,
    avery_reads_and_approves,
    commands,
    riley_asks_for_a_refund,
    tour_steps,
)

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
MORE = "### More to try in the sandbox"
UNDO_WINDOW_S = 3600  # "for an hour after it ran" (the refund type's `undo_window`, 1h by default)


def more_to_try(readme: str) -> dict[int, str]:
    """The section's numbered entries, each as one line of text."""
    section = readme.split(MORE, 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    found = re.findall(r"(?ms)^(\d+)\. (.*?)(?=\n\n|\n\d+\. |\Z)", section)
    return {int(number): " ".join(text.split()) for number, text in found}


def entry(number: int) -> str:
    return more_to_try(README.read_text(encoding="utf-8"))[number]


def command_lines(text: str) -> list[str]:
    """What the entry says to run in a shell: its code spans that start with `countersign `."""
    return [code for code in re.findall(r"`([^`]+)`", text) if code.startswith("countersign ")]


@dataclass(frozen=True)
class Sandbox:
    demo: Demo
    clock: ShiftedClock
    folder: Path  # laid out like the checkout: the demo's `countersign-demo.db`, `.venv`, `examples`

    def cli(self, line: str) -> str:
        """`line` run by bash in the checkout after the README's setup lines; its output (exit 0)."""
        runnable = code_blocks(README.read_text(encoding="utf-8"))[0]
        setup = [each for each in runnable if each.startswith((". ", "export "))]
        done = subprocess.run(
            ["bash", "-c", " && ".join([*setup, line])],
            cwd=self.folder,
            env=readme_environment(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0 and "Traceback" not in done.stderr, f"{line}\n{done.stdout}\n{done.stderr}"
        return done.stdout


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    need_browser()
    folder = tmp_path_factory.mktemp("more-to-try")
    for name in (".venv", "examples"):
        (folder / name).symlink_to(ROOT / name)
    clock = ShiftedClock()
    with running_demo(folder, clock=clock, database="countersign-demo.db") as demo:
        yield Sandbox(demo, clock, folder)


@pytest.fixture
def tour(sandbox: Sandbox, page: Any, shots: Path) -> Tour:
    page.goto(sandbox.demo.url)
    return Tour(page, sandbox.demo, sandbox.clock, shots)


def action_id(card: Any) -> str:
    """The action a card is about, from its details line ("action `act_…`")."""
    found = re.search(r"action (act_\w+)", card.locator("[data-block-id='meta']").inner_text())
    assert found is not None, card.inner_text()
    return found.group(1)


def confirm(page: Any) -> None:
    """Yes, in the dialog a button asks first with ("Draft the undo", "Report")."""
    page.locator(".overlay.confirm .modal-foot button").last.click()


def answer_to(tour: Tour, command: str) -> Any:
    """The ephemeral answer to a slash command typed in the open channel."""
    answers = tour.page.locator("#messages .message.ephemeral")
    before = answers.count()
    tour.say(command)
    tour.expect(answers).to_have_count(before + 1)
    return answers.last


def test_5_standing_rules(sandbox: Sandbox, tour: Tour) -> None:
    text, expect, page = entry(5), tour.expect, tour.page
    assert text.startswith('**Standing rules ("Approve, and allow similar…").**')
    set_hitl, listing, revoking = command_lines(text)
    assert sandbox.cli(set_hitl).startswith("feature-flag: hitl (set by U0ADMIN)")

    (command,) = commands(text)
    assert "As Riley in **#approvals**" in text and "Turn on dark-mode" in command
    tour.act_as(RILEY)
    tour.open("approvals")
    tour.run(command)
    tour.act_as(ADA)
    first = tour.card("dark-mode", "allow_similar")
    allow = first.locator("button[data-action-id='allow_similar']")
    expect(allow).to_have_text("Approve, and allow similar…")
    allow.click()
    form = page.locator("form.modal")
    expect(form.locator(".modal-title")).to_have_text("Allow similar")
    # One line per parameter, prefilled with this action's values, the expiry and a count limit.
    for prefilled in ("`= dark-mode`", "`= true`", "(`7d`)"):
        assert prefilled in text, f"the README no longer says {prefilled}"
    flag = form.locator("input[name='param:flag']")
    expect(flag).to_have_value("= dark-mode")
    expect(form.locator("input[name='param:enabled']")).to_have_value("= true")
    expect(form.locator("input[name='expires']")).to_have_value("7d")
    expect(form.locator("input[name='max_uses']")).to_have_value("")
    assert "Change the flag's line to `one of dark-mode, fast-shipping`" in text
    flag.fill("one of dark-mode, fast-shipping")
    form.locator("button.btn-primary").click()
    expect(page.locator(".overlay")).to_have_count(0)
    expect(first).to_contain_text("Approved by @Ada")  # as a click would
    expect(first).to_contain_text("Approved with a standing rule for similar actions")
    rule = re.search(r"rule_\w+", first.locator("[data-block-id='rule']").inner_text())
    assert rule is not None
    made = action_id(first)
    assert "(`rule.created` on the ledger)" in text
    expect(answer_to(tour, f"/countersign audit {made}")).to_contain_text(f"rule.created by @Ada · rule {rule.group()}")

    # A flag the rule allows: a veto window, not an approval, saying which rule allowed it.
    tour.act_as(RILEY)
    tour.run(command.replace("dark-mode", "fast-shipping"))
    allowed = tour.card("fast-shipping", "veto")
    assert allowed.locator("button[data-action-id='approve']").count() == 0
    tour.sees(allowed, text, "Allowed by standing rule `rule_…`")
    expect(allowed.locator("[data-block-id='rule']")).to_contain_text(rule.group())
    assert "(`rule.used`)" in text
    expect(answer_to(tour, f"/countersign audit {action_id(allowed)}")).to_contain_text(
        f"rule.used by system · rule {rule.group()}"
    )
    # One it does not allow still waits for a person.
    tour.run(command.replace("dark-mode", "new-checkout"))
    waiting = tour.card("new-checkout", "approve")
    expect(waiting.locator("[data-block-id='rule']")).to_have_count(0)
    assert waiting.locator("button[data-action-id='veto']").count() == 0

    # Ada's Home lists the rules; the command line lists and revokes them.
    tour.act_as(ADA)
    page.click(".side-item.app-home")
    rules = page.locator(".home [data-block-id='rules_list']")
    expect(rules).to_contain_text(f"{rule.group()} live · feature-flag · toggle_feature_flag")
    expect(rules).to_contain_text("flag one of dark-mode, fast-shipping")
    assert sandbox.cli(listing).startswith(f"{rule.group()} live feature-flag toggle_feature_flag: ")
    # A second rule, made on the waiting card, for the command line to end.
    tour.open("approvals")
    waiting.locator("button[data-action-id='allow_similar']").click()
    form.locator("button.btn-primary").click()
    expect(waiting).to_contain_text("Approved by @Ada")
    second = re.search(r"rule_\w+", waiting.locator("[data-block-id='rule']").inner_text())
    assert second is not None and second.group() != rule.group()
    revoked = sandbox.cli(revoking.replace("rule_…", second.group()))
    assert revoked.startswith(f"{second.group()} revoked by U0ADMIN")

    # "This was wrong" on the run the first rule allowed ends every rule of the type.
    tour.clock.advance(31)  # the veto window passes: it runs
    expect(allowed).to_contain_text("Succeeded", timeout=30_000)
    assert "**This was wrong** on a run the rule allowed revokes every rule of the type" in text
    wrong = allowed.locator("button[data-action-id='report_incident']")
    expect(wrong).to_have_text("This was wrong")
    wrong.click()
    confirm(page)
    listed = eventually(lambda: (out := sandbox.cli(listing)) and f"{rule.group()} revoked" in out and out)
    assert f"{second.group()} revoked" in listed and " live " not in listed, listed


def test_6_undo_a_run(sandbox: Sandbox, tour: Tour, browser_context: Any) -> None:
    text, expect, page = entry(6), tour.expect, tour.page
    assert "the receipt of the refund Avery approved in step 2" in text
    steps = tour_steps(README.read_text(encoding="utf-8"))
    riley_asks_for_a_refund(tour, steps[0])
    avery_reads_and_approves(tour, steps[1])
    receipt = tour.by_ts(tour.asked["1001"])
    undo = receipt.locator("button[data-action-id='undo']")
    expect(undo).to_have_text("Undo")
    tour.sees(receipt, text, ":leftwards_arrow_with_hook: Undo is offered until …")
    refund = action_id(receipt)

    # Riley, in a tab of their own, also clicks Undo and holds the confirm open meanwhile.
    other = browser_context.new_page()
    try:
        other.goto(f"{sandbox.demo.url}?as={RILEY}&channel=C0PAYMENTS")
        other.locator(f"#messages .message[data-ts='{tour.asked['1001']}'] button[data-action-id='undo']").click()
        expect(other.locator(".overlay.confirm")).to_be_visible()

        assert "As Avery click it and confirm" in text
        undo.click()
        confirm(page)
        reversal = tour.card("the reversal of a refund", "approve")
        tour.sees(reversal, text, "the reversal of a refund")
        expect(reversal).to_contain_text(f"Undoes the refund of order 1001 (action {refund})")
        tour.sees(receipt, text, "Undo asked for by @Avery")
        expect(undo).to_have_count(0)

        # A second Undo is refused, and only its clicker is told.
        assert "A second Undo, or one after the hour, is refused and told only to the clicker" in text
        confirm(other)
        told = other.locator("#messages .message.ephemeral").last
        expect(told).to_contain_text("already undone or its undo is pending")
        expect(told).to_contain_text("Only visible to you")
    finally:
        other.close()
    expect(page.locator("#messages .message.ephemeral", has_text="already undone")).to_have_count(0)

    # Avery asked for it, so Avery's Approve is refused; Ada's runs it.
    tour.read()
    tour.approve(reversal)
    expect(page.locator("#messages .message.ephemeral").last).to_contain_text("cannot approve it")
    expect(reversal.locator("button[data-action-id='approve']")).to_be_visible()
    tour.act_as(ADA)
    tour.approve(reversal)
    expect(reversal).to_contain_text("Succeeded", timeout=30_000)
    expect(receipt).to_contain_text("Undone: its undo")
    lookup = next(code for code in re.findall(r"`([^`]+)`", text) if "lookup order 1001" in code)
    tour.say(lookup)
    asked = page.locator(f"#messages .message[data-user='{ADA}']", has_text="lookup order 1001").last
    expect(asked.locator("button.replies")).to_be_visible(timeout=30_000)
    thread = tour.thread_of(asked)
    expect(thread).to_contain_text("Looked up order 1001", timeout=30_000)
    expect(thread.locator(".code-block").last).to_contain_text('"refunded_cents": 0')  # nothing refunded
    tour.close_thread()

    # The ledger names each from the other.
    reversal_id = action_id(reversal)
    audit = [code for code in re.findall(r"`([^`]+)`", text) if code.startswith("/countersign audit")]
    assert audit == ["/countersign audit act_…"]
    shown = answer_to(tour, audit[0].replace("act_…", refund))
    expect(shown).to_contain_text(f"action.undo_requested by @Avery · its undo {reversal_id}")
    expect(answer_to(tour, audit[0].replace("act_…", reversal_id))).to_contain_text(f"undoes {refund}")
    # An undone refund counts against the type's evidence like a veto.
    assert "(`/countersign autonomy refund`)" in text
    evidence = answer_to(tour, "/countersign autonomy refund")
    expect(evidence).to_contain_text("1 outcomes (0 clean, 0 rejected, 1 vetoed)")

    # Undo after the hour: refused, and only the clicker is told.
    tour.act_as(RILEY)
    tour.run(commands(steps[0])[0].replace("1001", "1004"))
    late = tour.card("Refund order 1004")
    tour.act_as(AVERY)
    tour.read()
    tour.approve(late)
    expect(late).to_contain_text("Succeeded", timeout=30_000)
    tour.clock.advance(UNDO_WINDOW_S)
    late.locator("button[data-action-id='undo']").click()
    confirm(page)
    told = page.locator("#messages .message.ephemeral").last
    expect(told).to_contain_text("undo window")
    expect(told).to_contain_text("Only visible to you")
    tour.act_as(RILEY)
    expect(page.locator("#messages .message.ephemeral", has_text="undo window")).to_have_count(0)


def test_7_claude_code_asks_slack_answers(tour: Tour, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="bot.sandbox.claude_code")
    text, expect, page = entry(7), tour.expect, tour.page
    assert "two cards wait in **#coding**" in text and "As **Ada** approve the edit" in text
    tour.act_as(ADA)
    tour.open("coding")
    bash = tour.card("Bash", "approve")
    expect(bash.locator("[data-block-id='change'] .code-block")).to_contain_text("export STRIPE_API_KEY=sk_live_…••••")
    assert "(`sk_live_…••••`)" in text and DEMO_KEY not in page.content()
    edit = tour.card("settings.py", "approve")
    diff = edit.locator("[data-block-id='change'] .code-block")
    expect(diff).to_contain_text("-DEBUG = True")
    expect(diff).to_contain_text("+DEBUG = False")

    def answered(tool: str) -> str:
        said = [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"Claude Code's {tool}: ")]
        return said[-1] if said else ""

    tour.approve(edit)
    tour.sees(edit, text, "Handed to Claude Code")
    assert "the hook answers Claude Code `allow`" in text
    assert eventually(lambda: answered("Edit"), 30).startswith("Claude Code's Edit: allow")

    assert "reject the command and Claude Code is denied with your reason" in text
    bash.locator("button[data-action-id='reject']").click()
    modal = page.locator(".overlay .modal")
    reason = "Not with a live key in the shell history."
    modal.locator("textarea").fill(reason)
    modal.locator("button.btn-primary").click()
    expect(bash).to_contain_text("Rejected by @Ada")
    denied = eventually(lambda: answered("Bash"), 30)
    assert denied.startswith("Claude Code's Bash: deny") and reason in denied, denied
