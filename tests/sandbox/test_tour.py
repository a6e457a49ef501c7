"""The README's tour ("Try it in five minutes, offline"), walked in a real browser exactly as
written: each numbered step is read from README.md, its commands typed as they are printed
there, and what the step says the person sees is asserted. The screenshots the README shows
(`docs/screenshots/`) are taken on the way (`make screenshots` keeps them).

Each step is walked by the function `WALKERS` names for a phrase of its text, in the README's
order; a step the README gains without a walker here fails the test by name. Waiting is never
slept through: the app's clock (a `ShiftedClock`) is moved past a veto window, a reminder's
20 s, or the couple of seconds a careful approver reads a card.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bot.demo import Demo
from tests.fakes.clock import ShiftedClock
from tests.sandbox.browser import need_browser
from tests.sandbox.harness import running_demo

pytestmark = pytest.mark.slow
README = Path(__file__).resolve().parents[2] / "README.md"
TOUR = "## Try it in five minutes, offline"
RILEY, AVERY, ADA, SAM = "U0REQUESTER", "U0APPROVER", "U0ADMIN", "U0STRANGER"
CLOCK = r"\d{1,2}:\d{2}:\d{2}\s?[AP]M"  # the browser's en-US time of day, to the second
READING_S = 3  # "taking a couple of seconds to read each" (the demo's min_read_time is 2 s)


def tour_steps(readme: str) -> list[str]:
    """The tour's numbered steps, each as one line of text (images and all)."""
    section = readme.split(TOUR, 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]  # "More to try" is not the tour
    items = re.split(r"(?m)^\d+\. ", section.split("\n\n", 1)[1])[1:]
    return [" ".join(item.split("\n\n", 1)[0].split()) for item in items]


def commands(step: str) -> list[str]:
    """What the step says to type: its code spans that start with `/` or `@`."""
    return [code for code in re.findall(r"`([^`]+)`", step) if code.startswith(("/", "@countersign"))]


def quoted(step: str) -> list[str]:
    """What the step says the person reads: its "…" quotations."""
    return re.findall(r'"([^"]+)"', step)


def shown(step: str) -> list[str]:
    return re.findall(r"\(docs/screenshots/([\w-]+\.png)\)", step)


def as_pattern(quotation: str) -> re.Pattern[str]:
    """A README quotation as a pattern: its example time of day and its seconds may differ, an
    ellipsis stands for what the README leaves out (`rule_…`), code is shown without its
    backticks and an emoji's `:name:` as the emoji."""
    pattern = re.escape(quotation.replace("`", ""))
    pattern = pattern.replace(re.escape("12:28:41 AM"), CLOCK).replace(re.escape("30 s"), r"\d+ s")
    return re.compile(re.sub(r":[a-z_]+:", r"\\S+", pattern).replace("…", r".+?"))


@dataclass
class Tour:
    page: Any
    demo: Demo
    clock: ShiftedClock
    shots: Path
    taken: set[str] = field(default_factory=set)
    asked: dict[str, str] = field(default_factory=dict)  # what was asked for → its card's ts

    @property
    def expect(self) -> Any:
        return need_browser().expect

    def act_as(self, user: str) -> None:
        self.page.select_option("#as-user", user)
        self.expect(self.page.locator("#as-user")).to_have_value(user)

    def open(self, channel: str) -> None:
        self.page.click(f".side-item.channel-{channel}")
        self.expect(self.page.locator("#pane-title")).to_have_text(f"# {channel}")

    def say(self, text: str) -> None:
        self.page.fill("#composer-input", text)
        self.page.press("#composer-input", "Enter")

    def run(self, command: str) -> None:
        """A slash command, as typed; Slack answers only its typer."""
        self.say(command)
        self.expect(self.page.locator(".message.ephemeral").last).to_contain_text("Started")

    def card(self, text: str, button: str = "approve") -> Any:
        """The newest card that mentions `text` and has `button` (found by its ts, so it stays
        found once the button is gone)."""
        locator = self.page.locator(
            "#messages .message", has=self.page.locator(f"button[data-action-id='{button}']"), has_text=text
        ).last
        self.expect(locator).to_be_visible()
        return self.by_ts(str(locator.get_attribute("data-ts")))

    def approve(self, card: Any) -> None:
        """Approve, through the confirm a high-risk card (a refund) asks first."""
        card.locator("button[data-action-id='approve']").click()
        self.page.locator(".overlay.confirm button.btn-primary").click()

    def by_ts(self, ts: str) -> Any:
        return self.page.locator(f"#messages .message[data-ts='{ts}']")

    def read(self) -> None:
        """A careful approver reads the card before deciding."""
        self.clock.advance(READING_S)

    def shot(self, name: str) -> None:
        assert self.page.locator(".cant-render").count() == 0
        self.page.screenshot(path=str(self.shots / name))
        self.taken.add(name)

    def thread_of(self, message: Any) -> Any:
        message.locator("button.replies").click()
        thread = self.page.locator("#thread")
        self.expect(thread).to_be_visible()
        return thread

    def close_thread(self) -> None:
        self.page.click("#thread-close")

    def sees(self, where: Any, step: str, quotation: str) -> None:
        """`where` shows the step's quotation (as the README prints it, give or take the time)."""
        assert quotation in quoted(step), f"the README no longer says {quotation!r}: {step}"
        self.expect(where).to_contain_text(as_pattern(quotation))


def riley_asks_for_a_refund(tour: Tour, step: str) -> None:
    assert "You are **Riley**" in step and "In **#payments**" in step
    tour.act_as(RILEY)
    tour.open("payments")
    (command,) = commands(step)
    tour.run(command)
    expect = tour.expect
    expect(tour.page.locator(".message.ephemeral").last).to_contain_text("Only visible to you")
    # Riley may not approve their own request: the card waits for an approver.
    card = tour.card("Refund order 1001")
    tour.asked["1001"] = str(card.get_attribute("data-ts"))


def avery_reads_and_approves(tour: Tour, step: str) -> None:
    expect = tour.expect
    tour.act_as(AVERY)
    tour.open("payments")
    card = tour.by_ts(tour.asked["1001"])
    expect(card).to_contain_text("Refund order 1001, it arrived broken")  # the request
    expect(card).to_contain_text("@Riley")  # <@U0REQUESTER>, shown as a name
    expect(card).to_contain_text("Damaged goods get a full refund")  # the agent's reasoning
    expect(card).to_contain_text(re.compile(r"[Cc]onfidence\D*0\.86|86\s?%"))
    params = card.locator("[data-block-id='params']")
    expect(params).to_contain_text("Order id")  # a labelled field per parameter
    expect(params).to_contain_text("Amount cents24.00 (2,400 cents)")  # shown as an amount
    exact = card.locator("[data-block-id='params_json']")
    expect(exact).to_contain_text('{"amount_cents":2400,"order_id":"1001"}')
    expect(exact).to_contain_text("sha256")
    expect(card.locator("button.btn-primary")).to_have_text("Approve")
    expect(card.locator("button.btn-danger")).to_have_text("Reject")
    tour.shot("card.png")
    tour.read()
    tour.approve(card)
    tour.sees(card, step, "Approved by @Avery today at 12:28:41 AM")
    expect(card).to_contain_text("Succeeded")
    assert card.locator("button[data-action-id='approve']").count() == 0
    thread = tour.thread_of(card)
    expect(thread).to_contain_text("The refund of order 1001 succeeded")
    expect(thread.locator(".code-block").last).to_contain_text('"refunded_cents": 2400')
    tour.shot("approved.png")
    tour.close_thread()


def a_flag_change_in_its_veto_window(tour: Tour, step: str) -> None:
    expect = tour.expect
    (command,) = commands(step)
    assert "As Riley in **#approvals**" in step
    tour.act_as(RILEY)
    tour.open("approvals")
    tour.run(command)
    tour.act_as(AVERY)
    card = tour.card("new-checkout", "veto")
    tour.sees(card, step, "Runs in 30 s, today at 12:28:41 AM, unless vetoed")
    expect(card).to_contain_text("toggle_feature_flag")
    tour.shot("veto-window.png")
    card.locator("button[data-action-id='veto']").click()
    expect(card).to_contain_text("Vetoed by @Avery")
    assert card.locator("button[data-action-id='veto']").count() == 0
    tour.shot("vetoed.png")
    # "(or let it run)": the same request again, and nobody vetoes it within its 30 s.
    tour.act_as(RILEY)
    tour.run(command)
    tour.act_as(AVERY)
    unvetoed = tour.card("new-checkout", "veto")
    tour.clock.advance(31)
    expect(unvetoed).to_contain_text("Not vetoed in the veto window", timeout=30_000)
    expect(unvetoed).to_contain_text("Succeeded")


def a_mention_keeps_its_thread(tour: Tour, step: str) -> None:
    expect = tour.expect
    (command,) = commands(step)
    tour.say(command)
    asked = tour.page.locator(f"#messages .message[data-user='{AVERY}']", has_text="lookup order 1002").last
    expect(asked.locator("button.replies")).to_be_visible(timeout=30_000)
    thread = tour.thread_of(asked)
    expect(thread).to_contain_text("Looked up order 1002", timeout=30_000)  # the answer, last
    said = thread.locator(".message").all_inner_texts()
    drafted = next(i for i, text in enumerate(said) if "The lookup of order 1002" in text and "its card" in text)
    ran = next(i for i, text in enumerate(said) if "The lookup of order 1002 succeeded" in text)
    assert 0 < drafted < ran < len(said) - 1 and "Looked up order 1002" in said[-1], "\n---\n".join(said)
    link = thread.locator(".message").nth(drafted).locator("a.permalink", has_text="its card")
    link.click()  # opens the card here, in #approvals, as Slack opens a permalink
    expect(tour.page.locator("#pane-title")).to_have_text("# approvals")
    expect(tour.page.locator("#messages .message.highlight")).to_contain_text("lookup_order")


def a_reminder_you_can_act_on(tour: Tour, step: str) -> None:
    expect = tour.expect
    (command,) = commands(step)
    assert "As Riley in **#payments**" in step
    tour.act_as(RILEY)
    tour.open("payments")
    tour.run(command)
    card = tour.card("Refund order 1002")
    tour.asked["1002"] = str(card.get_attribute("data-ts"))
    tour.act_as(AVERY)
    dm = tour.page.locator(".side-item.dm")
    expect(dm).to_have_count(0)  # no reminder yet
    tour.clock.advance(21)
    expect(dm.locator(".badge")).to_have_text("1", timeout=30_000)  # unread, as Slack shows a new DM
    dm.click()
    reminder = tour.page.locator("#messages .message", has=tour.page.locator("button[data-action-id='acknowledge']"))
    expect(reminder).to_contain_text("The refund of order 1002")
    expect(reminder).to_contain_text("@Riley")
    tour.shot("reminder.png")
    reminder.locator("a.permalink").click()  # the link opens the card
    expect(tour.page.locator("#pane-title")).to_have_text("# payments")
    expect(tour.page.locator("#messages .message.highlight")).to_have_attribute("data-ts", tour.asked["1002"])
    dm.click()
    reminder = tour.page.locator("#messages .message").last
    reminder.locator("button[data-action-id='acknowledge']").click()
    tour.sees(reminder, step, "Acknowledged — the card is yours")
    assert reminder.locator("button[data-action-id='acknowledge']").count() == 0
    tour.open("payments")
    expect(tour.by_ts(tour.asked["1002"])).to_contain_text("Acknowledged by @Avery")


def reject_edit_a_stranger_and_home(tour: Tour, step: str) -> None:
    expect, page = tour.expect, tour.page
    # Reject the reminded refund: a modal asks why; the reason reaches the agent word for word.
    card = tour.by_ts(tour.asked["1002"])
    card.locator("button[data-action-id='reject']").click()
    modal = page.locator(".overlay .modal")
    expect(modal.locator(".modal-title")).to_have_text("Reject action")
    modal.locator("button.btn-primary").click()  # empty: Slack's own check, nothing is sent
    expect(modal.locator(".input-error")).to_have_text("Please complete this required field.")
    modal.locator("textarea").fill("   ")
    modal.locator("button.btn-primary").click()  # blank: the app answers with an inline error
    expect(modal.locator(".input-error")).to_contain_text("Say why")
    reason = "The customer already got a replacement <b>grinder</b>."
    modal.locator("textarea").fill(reason)
    tour.shot("reject-modal.png")
    modal.locator("button.btn-primary").click()
    expect(page.locator(".overlay")).to_have_count(0)
    expect(card).to_contain_text("Rejected by @Avery")
    expect(card).to_contain_text(reason)  # shown as text, not markup
    assert card.locator("b", has_text="grinder").count() == 0
    # The task's closing message, where it reports (the type's channel), quotes it as the agent got it.
    closing = page.locator("#messages .message", has_text="The refund of order 1002 was rejected")
    expect(closing).to_contain_text(f"was rejected by @Avery — “{reason}”", timeout=30_000)

    # Another refund: Sam (a stranger) is told no, and only Sam; Avery edits it and approves.
    (command,) = commands(step)
    tour.act_as(RILEY)
    tour.run(command)
    card = tour.card("Refund order 1003")
    ts = str(card.get_attribute("data-ts"))
    tour.act_as(SAM)
    tour.approve(tour.by_ts(ts))
    refusal = page.locator("#messages .message.ephemeral").last
    expect(refusal).to_contain_text("not an approver")
    expect(refusal).to_contain_text("the refund of order 1003")
    expect(refusal).to_contain_text("Only visible to you")
    tour.act_as(AVERY)
    card = tour.by_ts(ts)
    expect(card.locator("button[data-action-id='approve']")).to_be_visible()  # the card is as it was
    # Only Sam's: once the page is drawn for Avery (it redraws after the switch), it is not there.
    expect(page.locator("#messages .message.ephemeral", has_text="not an approver")).to_have_count(0)

    # countersign · Home: what waits for Avery, what was decided (linked to its card), the levels.
    page.click(".side-item.app-home")
    home = page.locator(".home")
    expect(home).to_contain_text("Waiting for you")
    expect(home).to_contain_text("Refund order 1003")
    expect(home).to_contain_text("Recently decided")
    decided = home.locator("a.permalink", has_text="The refund of order 1002")
    expect(decided).to_be_visible()
    expect(home).to_contain_text("Autonomy levels")
    expect(home).to_contain_text("approve first (hitl)")
    tour.shot("home.png")
    decided.click()  # a row opens its card
    expect(page.locator("#messages .message.highlight")).to_have_attribute("data-ts", tour.asked["1002"])

    tour.read()
    card = tour.by_ts(ts)
    card.locator("button[data-action-id='edit']").click()
    modal = page.locator(".overlay .modal")
    expect(modal.locator(".modal-title")).to_have_text("Edit and approve")
    amount = modal.locator(".block-input", has_text="Amount").locator("input")
    amount.fill("1200")
    modal.locator("button.btn-primary").click()
    expect(page.locator(".overlay")).to_have_count(0)
    expect(card).to_contain_text("Approved with edits by @Avery")
    expect(card).to_contain_text("12.00 (1,200 cents)")
    expect(card).to_contain_text("edited")


def three_refunds_earn_a_proposal(tour: Tour, step: str) -> None:
    expect, page = tour.expect, tour.page
    (command, autonomy) = commands(step)
    orders = re.findall(r"\b100\d\b", step)
    assert orders[:3] == ["1004", "1005", "1006"] and "1004" in command
    proposals = page.locator(".message", has_text="Promote refund")
    for number, order in enumerate(orders[:3], 1):
        tour.act_as(RILEY)
        tour.open("payments")
        tour.run(command.replace("1004", order))
        tour.act_as(AVERY)
        card = tour.card(f"Refund order {order}")
        tour.read()
        tour.approve(card)
        expect(card).to_contain_text("Succeeded")
        if number < 3:  # the demo's rule needs six decided refunds: not yet
            tour.open("countersign-admins")
            expect(proposals).to_have_count(0)
    # The proposal reaches #countersign-admins; only an admin's Promote counts.
    tour.open("countersign-admins")
    proposal = proposals.last
    expect(proposal).to_contain_text("hitl → hotl", timeout=30_000)
    expect(proposal).to_contain_text("6 outcomes")
    expect(proposal).to_contain_text("clean 4 · rejected 1")
    tour.shot("proposal.png")
    proposal.locator("button[data-action-id='promote']").click()  # Avery is no admin
    expect(page.locator("#messages .message.ephemeral").last).to_contain_text("not an admin")
    expect(proposal.locator("button[data-action-id='promote']")).to_be_visible()
    tour.act_as(ADA)
    proposal.locator("button[data-action-id='promote']").click()
    expect(proposal).to_contain_text("Promoted by @Ada")
    tour.say(autonomy)
    answer = page.locator("#messages .message.ephemeral").last
    expect(answer).to_contain_text("refund: hotl")
    expect(answer).to_contain_text("Earned hitl → hotl")
    expect(answer).to_contain_text("promoted by @Ada on this evidence: 6 outcomes (4 clean, 1 rejected")
    expect(answer).to_contain_text("At its ceiling. Evidence since the promotion: 0 outcomes")


Walker = Callable[[Tour, str], None]
# Each README step is walked by the function of a phrase its text holds.
WALKERS: list[tuple[str, Walker]] = [
    ("/countersign run refund Refund order 1001", riley_asks_for_a_refund),
    ("Switch **Acting as** to **Avery**", avery_reads_and_approves),
    ("/countersign run feature-flag Turn on new-checkout", a_flag_change_in_its_veto_window),
    ("@countersign lookup order 1002", a_mention_keeps_its_thread),
    ("leave it undecided for 20 s", a_reminder_you_can_act_on),
    ("**Reject**", reject_edit_a_stranger_and_home),
    ("Approve three more refunds", three_refunds_earn_a_proposal),
]


@pytest.fixture(scope="module")
def tour_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Demo, ShiftedClock]]:
    need_browser()
    clock = ShiftedClock()
    with running_demo(tmp_path_factory.mktemp("tour"), clock=clock) as demo:
        yield demo, clock


def test_the_readme_tour_as_written(tour_demo: tuple[Demo, ShiftedClock], page: Any, shots: Path) -> None:
    demo, clock = tour_demo
    steps = tour_steps(README.read_text(encoding="utf-8"))
    assert steps, "the README has no tour"
    page.goto(demo.url)
    tour = Tour(page, demo, clock, shots)
    for number, step in enumerate(steps, 1):
        walkers = [walker for phrase, walker in WALKERS if phrase in step]
        assert len(walkers) == 1, f"README tour step {number} needs exactly one walker here: {step[:100]}"
        walkers[0](tour, step)
        for name in shown(step):
            assert name in tour.taken, f"README tour step {number} shows {name}: the walk did not take it"
    assert "card.png" in tour.taken  # the README's first picture
