"""The unmodified `humanlayer` SDK (0.7.9, its last release) pointed at the served app with
nothing but `HUMANLAYER_API_BASE` and `HUMANLAYER_API_KEY`: `require_approval` waits for a
signed Slack approve and then runs the function; a rejection comes back as the SDK's own
rejection string with the approver's words; `human_as_tool` returns the person's answer.

The SDK polls every 3 s; its `sleep` is a field of `HumanLayer` (a constructor argument), so
here it is a `Pace`: each poll is counted (a test waits for polls, not for time), and it waits
at most 50 ms for the next one, at once when the test says it acted."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest
from humanlayer import (
    AsyncHumanLayer,
    ContactChannel,
    FunctionCallSpec,
    HumanContactSpec,
    HumanLayer,
    ResponseOption,
)
from humanlayer import SlackContactChannel as Slack
from humanlayer.core.protocol import HumanLayerException
from sqlalchemy import select

from core.models import AuditEvent, HumanLayerCall
from tests.bot.slack_app import ALICE, APPROVALS, BOB, MALLORY, SlackApp
from tests.client.served import API_CONFIG, api_serving, card, click, new_client, reject

CONFIG: dict[str, Any] = {
    **API_CONFIG,
    "task_types": {
        **API_CONFIG["task_types"],
        # The agent's functions are its own: any name, any keyword arguments (open tools).
        "payouts": {
            "open_tools": {"read_only": ["get_*"]},
            "autonomy": "hitl",
            "approvers": [ALICE, BOB],
            "escalation": [{"after": "10m", "then": "expire"}],
        },
        "fast": {"open_tools": {"risk": "low", "idempotent": True}, "autonomy": "auto", "approvers": [ALICE]},
    },
}
HANDED = {"handed_to": "the HumanLayer client"}


class Pace:
    """The SDK's `sleep` between polls: counted, short, and cut shorter by `kick`."""

    def __init__(self) -> None:
        self.polls = 0
        self.changed = threading.Condition()

    def __call__(self, seconds: float) -> None:
        with self.changed:
            self.polls += 1
            self.changed.notify_all()
            self.changed.wait(timeout=0.05)

    def waited(self, polls: int, timeout_s: float = 30) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: self.polls >= polls, timeout_s), f"only {self.polls} polls"

    def kick(self) -> None:
        with self.changed:
            self.changed.notify_all()


@pytest.fixture
def app(db_url: str) -> Iterator[SlackApp]:
    with api_serving(db_url, CONFIG) as served:
        yield served


@pytest.fixture
def pace() -> Pace:
    return Pace()


def humanlayer(app: SlackApp, token: str, pace: Pace, monkeypatch: pytest.MonkeyPatch) -> HumanLayer:
    """The SDK as its users configure it: two environment variables (the whole migration)."""
    monkeypatch.setenv("HUMANLAYER_API_BASE", f"{app.url}/humanlayer/v1")
    monkeypatch.setenv("HUMANLAYER_API_KEY", token)
    return HumanLayer(sleep=pace)


def payout_function(ran: list[dict[str, Any]]) -> Callable[..., str]:
    def send_payout(account: str, cents: int) -> str:
        """Pay an account."""
        ran.append({"account": account, "cents": cents})
        return f"sent {cents} to {account}"

    return send_payout


def started(pool: ThreadPoolExecutor, pace: Pace, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Future[Any]:
    """`call` running in the SDK's thread, once it asked and polled at least once."""
    running = pool.submit(call, *args, **kwargs)
    pace.waited(1)
    return running


def test_require_approval_waits_for_a_signed_slack_approve_then_runs_the_function(
    app: SlackApp, pace: Pace, monkeypatch: pytest.MonkeyPatch
) -> None:
    hl = humanlayer(app, new_client(app, "agent", ["payouts"])["token"], pace, monkeypatch)
    ran: list[dict[str, Any]] = []
    send_payout = hl.require_approval()(payout_function(ran))
    with ThreadPoolExecutor(1) as pool:
        running = started(pool, pace, send_payout, account="acme", cents=500)
        pace.waited(4)  # polled again and again: still waiting, nothing ran
        assert not running.done() and ran == []
        [action] = app.actions()
        assert (action.state, action.tool, action.params, action.task_type) == (
            "pending",
            "send_payout",
            {"account": "acme", "cents": 500},
            "payouts",
        )
        _, _, posted = card(app, action.public_id)
        buttons = [e["action_id"] for b in posted.blocks if b["type"] == "actions" for e in b["elements"]]
        assert "approve" in buttons and "edit" not in buttons  # the SDK would never see an edit
        assert "HumanLayer client 'agent'" in str(posted.blocks)
        click(app, action.public_id, ALICE, "approve")
        pace.kick()
        assert running.result(timeout=30) == "sent 500 to acme"
    assert ran == [{"account": "acme", "cents": 500}]
    [action] = app.actions()
    assert (action.state, action.decided_by, action.result, action.lease_until) == ("succeeded", ALICE, HANDED, None)
    app.settle()
    posted = app.card(action)
    assert "Handed to the HumanLayer client" in str(posted.blocks)
    thread = app.slack.thread(APPROVALS, posted.ts)
    assert any("was handed to the HumanLayer client" in m.text for m in thread)
    with app.services.sessions() as session:
        kinds = session.scalars(select(AuditEvent.kind).where(AuditEvent.action_public_id == action.public_id)).all()
    assert [kind for kind in kinds if kind.startswith(("action.", "decision."))][1:] == [
        "action.pending",
        "decision.approve",
        "action.approved",
        "action.executing",
        "action.succeeded",
    ]


def test_a_rejection_returns_the_sdks_rejection_with_the_approvers_words(
    app: SlackApp, pace: Pace, monkeypatch: pytest.MonkeyPatch
) -> None:
    hl = humanlayer(app, new_client(app, "agent", ["payouts"])["token"], pace, monkeypatch)
    ran: list[dict[str, Any]] = []
    send_payout = hl.require_approval()(payout_function(ran))
    with ThreadPoolExecutor(1) as pool:
        running = started(pool, pace, send_payout, account="acme", cents=90000)
        [action] = app.actions()
        reject(app, action.public_id, BOB, "Too much at once: split it in two, under 500 € each.")
        pace.kick()
        answer = running.result(timeout=30)
    assert answer == "User denied send_payout with message: Too much at once: split it in two, under 500 € each."
    assert ran == []
    assert app.actions()[0].state == "rejected"


def test_human_as_tool_returns_the_persons_answer_word_for_word(
    app: SlackApp, pace: Pace, monkeypatch: pytest.MonkeyPatch
) -> None:
    hl = humanlayer(app, new_client(app, "agent", ["payouts"])["token"], pace, monkeypatch)
    typed = "  eu-west-1, next to the database.\n\nNot us-east: *never* there. "
    with ThreadPoolExecutor(1) as pool:
        running = started(pool, pace, hl.human_as_tool(), "Which region should the new cluster go to?")
        app.settle()
        [posted] = [m for m in app.slack.messages(APPROVALS) if "answer_question" in str(m.blocks)]
        assert "Which region should the new cluster go to?" in str(posted.blocks)
        value = _answer_value(posted.blocks)
        # A stranger's click opens nothing and is told why, only to them.
        views = len(app.slack.views)
        assert app.click(MALLORY, "answer_question", value, "answer", posted.ts).status == 200
        app.settle()
        assert len(app.slack.views) == views
        assert "You may not answer this question" in app.slack.ephemerals(MALLORY)[-1].text
        answer(app, ALICE, value, posted.ts, typed)
        pace.kick()
        assert running.result(timeout=30) == typed
    app.settle()
    updated = app.slack.message(APPROVALS, posted.ts)
    assert "Answered by <@U0ALICE>" in str(updated.blocks) and "answer_question" not in str(updated.blocks)
    with app.services.sessions() as session:
        events = session.scalars(select(AuditEvent).where(AuditEvent.kind.startswith("question."))).all()
    assert [(e.kind, e.actor) for e in events] == [
        ("question.asked", "agent"),
        ("question.refused", MALLORY),
        ("question.answered", ALICE),
    ]
    assert events[-1].note == typed and events[-1].data["question_id"] == value


def test_a_question_to_a_person_goes_to_their_dm_and_an_option_comes_back(
    app: SlackApp, pace: Pace, monkeypatch: pytest.MonkeyPatch
) -> None:
    hl = humanlayer(app, new_client(app, "agent", ["payouts"])["token"], pace, monkeypatch)
    spec = HumanContactSpec(
        msg="Ship the release tonight?",
        subject="Release 4.2",
        channel=ContactChannel(slack=Slack(channel_or_user_id=BOB)),
        response_options=[ResponseOption(name="yes", title="Ship it"), ResponseOption(name="no", title="Wait")],
    )
    with ThreadPoolExecutor(1) as pool:
        running = started(pool, pace, hl.fetch_human_response, spec)
        app.settle()
        [posted] = [m for m in app.slack.messages(app.slack.dm(BOB)) if "answer_question" in str(m.blocks)]
        value = _answer_value(posted.blocks)
        assert app.click(BOB, "answer_question", value, "answer", posted.ts, channel=app.slack.dm(BOB)).status == 200
        app.settle()
        modal = app.slack.views[-1]
        values = {
            "answer": {"answer": {"type": "plain_text_input", "value": "Yes, after the 6 pm backup."}},
            "option": {"option": {"type": "radio_buttons", "selected_option": {"value": "0"}}},
        }
        assert app.submit(BOB, modal.payload, values).status == 200
        pace.kick()
        done = running.result(timeout=30)
    status = done.contact.status
    assert (status.response, status.response_option_name) == ("Yes, after the 6 pm backup.", "yes")
    assert done.contact.spec.subject == "Release 4.2"


def test_the_async_sdk_speaks_the_same_wire(app: SlackApp, pace: Pace, monkeypatch: pytest.MonkeyPatch) -> None:
    humanlayer(app, new_client(app, "agent", ["payouts"])["token"], pace, monkeypatch)

    async def sleep(seconds: float) -> None:
        await asyncio.to_thread(pace, seconds)

    ran: list[dict[str, Any]] = []
    function = payout_function(ran)

    async def send_payout(account: str, cents: int) -> str:
        return function(account=account, cents=cents)

    send_payout.__name__ = "send_payout"
    wrapped = AsyncHumanLayer(sleep=sleep).require_approval()(send_payout)
    with ThreadPoolExecutor(1) as pool:
        running = started(pool, pace, asyncio.run, wrapped(account="acme", cents=70))
        [action] = app.actions()
        click(app, action.public_id, BOB, "approve")
        pace.kick()
        assert running.result(timeout=30) == "sent 70 to acme"
    assert ran == [{"account": "acme", "cents": 70}] and app.actions()[0].result == HANDED


def test_an_auto_type_hands_the_call_over_at_once(app: SlackApp, pace: Pace, monkeypatch: pytest.MonkeyPatch) -> None:
    hl = humanlayer(app, new_client(app, "agent", ["fast"])["token"], pace, monkeypatch)
    ran: list[dict[str, Any]] = []
    assert hl.require_approval()(payout_function(ran))(account="acme", cents=5) == "sent 5 to acme"
    [action] = app.actions()
    assert (action.state, action.result) == ("succeeded", HANDED)


def test_the_same_call_id_twice_is_one_action_and_another_call_under_it_is_refused(
    app: SlackApp, pace: Pace, monkeypatch: pytest.MonkeyPatch
) -> None:
    hl = humanlayer(app, new_client(app, "agent", ["payouts"])["token"], pace, monkeypatch)
    spec = FunctionCallSpec(fn="send_payout", kwargs={"account": "acme", "cents": 1})
    first = hl.create_function_call(spec, call_id="call-fixed-1")
    again = hl.create_function_call(spec, call_id="call-fixed-1")
    assert first.call_id == again.call_id == "call-fixed-1" and first.status.approved is None
    assert len(app.actions()) == 1
    other = FunctionCallSpec(fn="send_payout", kwargs={"account": "acme", "cents": 2})
    with pytest.raises(HumanLayerException, match=r"409.*call-fixed-1.*already names another function call"):
        hl.create_function_call(other, call_id="call-fixed-1")
    with app.services.sessions() as session:
        assert session.scalar(select(HumanLayerCall.call_id)) == "call-fixed-1"


def test_a_bad_token_is_401(app: SlackApp, pace: Pace, monkeypatch: pytest.MonkeyPatch) -> None:
    new_client(app, "agent", ["payouts"])
    hl = humanlayer(app, "cs_not-a-token", pace, monkeypatch)
    ran: list[dict[str, Any]] = []
    answer = hl.require_approval()(payout_function(ran))(account="acme", cents=5)
    assert answer.startswith("Error fetching approval for send_payout: 401 Client Error")
    assert "missing, wrong or revoked bearer token" in answer and ran == []
    with pytest.raises(HumanLayerException, match="401"):
        hl.human_as_tool()("Anyone there?")
    assert app.actions() == []


def test_an_unknown_task_type_is_422_naming_it(app: SlackApp, pace: Pace, monkeypatch: pytest.MonkeyPatch) -> None:
    hl = humanlayer(app, new_client(app, "agent", ["payouts", "fast"])["token"], pace, monkeypatch)
    spec = FunctionCallSpec(fn="send_payout", kwargs={"account": "acme"}, state={"task_type": "refunds"})
    with pytest.raises(HumanLayerException, match=r"422.*spec\.state\.task_type.*unknown task type 'refunds'"):
        hl.create_function_call(spec)
    # A client of two task types must name one; the decorator cannot, so it gets the words.
    answer = hl.require_approval()(payout_function([]))(account="acme", cents=5)
    assert "422" in answer and "may ask for several task types (fast, payouts)" in answer
    named = FunctionCallSpec(fn="send_payout", kwargs={"account": "acme"}, state={"task_type": "payouts"})
    assert hl.create_function_call(named).status.approved is None
    assert [a.task_type for a in app.actions()] == ["payouts"]


def test_an_edit_is_refused_for_a_call_the_sdk_runs_as_it_asked(
    app: SlackApp, pace: Pace, monkeypatch: pytest.MonkeyPatch
) -> None:
    hl = humanlayer(app, new_client(app, "agent", ["payouts"])["token"], pace, monkeypatch)
    call = hl.create_function_call(FunctionCallSpec(fn="send_payout", kwargs={"account": "acme", "cents": 7}))
    [action] = app.actions()
    views = len(app.slack.views)
    click(app, action.public_id, ALICE, "edit")  # a click the card does not offer: no form opens
    app.settle()
    assert len(app.slack.views) == views
    assert "cannot be edited" in app.slack.ephemerals(ALICE)[-1].text
    # A forged submission of an edit form is refused on the form, and audited.
    metadata = {"action_id": action.public_id, "params_hash": action.params_hash, "tool": "send_payout"}
    form = {"type": "modal", "callback_id": "edit_params", "private_metadata": json.dumps(metadata), "blocks": []}
    typed = {"cents": {"cents": {"type": "plain_text_input", "value": "1"}}}
    refused = app.submit(ALICE, form, typed)
    assert refused.status == 200 and "cannot be edited" in refused.json()["errors"]["cents"]
    with app.services.sessions() as session:
        [event] = session.scalars(select(AuditEvent).where(AuditEvent.kind == "decision.refused")).all()
    assert (event.actor, event.data["code"]) == (ALICE, "not_editable")
    assert hl.get_function_call(call.call_id).status.approved is None
    assert app.actions()[0].params == {"account": "acme", "cents": 7}


def answer(app: SlackApp, user: str, value: str, ts: str, text: str, channel: str = APPROVALS) -> None:
    """`user` clicks Answer on the question's message, and sends `text` from its form."""
    views = len(app.slack.views)
    assert app.click(user, "answer_question", value, "answer", ts, channel=channel).status == 200
    app.settle()
    modal = app.slack.views[views]
    typed = {"answer": {"answer": {"type": "plain_text_input", "value": text}}}
    assert app.submit(user, modal.payload, typed).status == 200


def _answer_value(blocks: list[dict[str, Any]]) -> str:
    [button] = [
        e for b in blocks if b["type"] == "actions" for e in b["elements"] if e["action_id"] == "answer_question"
    ]
    return str(button["value"])
