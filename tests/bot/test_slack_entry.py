"""Ways in and around: @mentions (deduplicated), the slash command's verbs, App Home, the task
API, health checks."""

from __future__ import annotations

import json
import urllib.request
from datetime import timedelta

from sqlalchemy import func, select

from core import outbox
from core.messages import TaskResumed
from core.models import Task
from tests.bot.slack_app import ALICE, API_TOKEN, APPROVALS, REQUESTER, TOKEN, SlackApp, decide_block


def _tasks(app: SlackApp) -> list[Task]:
    with app.services.sessions() as session:
        return list(session.scalars(select(Task).order_by(Task.id)))


def test_a_mention_starts_a_task_once_even_when_slack_retries(slack_app: SlackApp) -> None:
    text = "<@U0BOT> refund Refund order 55, it is broken"
    ts = slack_app.slack.call("chat.postMessage", {"channel": APPROVALS, "text": text}, TOKEN).body["ts"]
    event = {"type": "app_mention", "user": REQUESTER, "channel": APPROVALS, "ts": ts, "text": text}
    assert slack_app.event(event, "Ev0001").status == 200
    assert slack_app.event(event, "Ev0001", retry=1).status == 200
    assert slack_app.event(event, "Ev0001", retry=2).status == 200
    [task] = _tasks(slack_app)
    assert (task.task_type, task.request_text, task.thread_ts) == ("refund", "Refund order 55, it is broken", ts)
    slack_app.settle()
    replies = slack_app.slack.thread(APPROVALS, ts)
    assert any(task.public_id in reply.text for reply in replies)


def test_a_mentions_conversation_stays_in_the_thread_where_the_person_asked(slack_app: SlackApp) -> None:
    slack = slack_app.slack
    slack.add_channel("C0SUPPORT", "support")
    text = "<@U0BOT> refund Refund order 56, it is broken"
    ts = slack.call("chat.postMessage", {"channel": "C0SUPPORT", "text": text}, TOKEN).body["ts"]
    event = {"type": "app_mention", "user": REQUESTER, "channel": "C0SUPPORT", "ts": ts, "text": text}
    assert slack_app.event(event, "Ev0003").status == 200
    slack_app.settle()
    [action] = slack_app.actions()
    card = slack_app.card(action)  # decided where approvers are
    link = f"https://countersign-sandbox.slack.com/archives/{APPROVALS}/p{card.ts.replace('.', '')}"
    replies = [m for m in slack.thread("C0SUPPORT", ts) if m.ts != ts]
    assert any(f"<{link}|its card>" in reply.text and "The refund of order 56" in reply.text for reply in replies)
    block_id, _ = decide_block(card.blocks)
    assert slack_app.click(ALICE, "approve", action.public_id, block_id, card.ts).status == 200
    slack_app.settle()
    said = [m.text for m in slack.thread("C0SUPPORT", ts) if m.ts != ts]
    assert any("The refund of order 56 succeeded" in text for text in said)  # the result, where they asked
    assert any("done" in text for text in said)  # and the closing message
    assert all(m.thread_ts == ts for m in slack.messages("C0SUPPORT") if m.ts != ts)  # nothing outside the thread


def test_slash_command_verbs(slack_app: SlackApp) -> None:
    help_reply = slack_app.command(REQUESTER, "help").body
    assert "run TYPE TEXT" in help_reply and "refund" in help_reply
    unknown = slack_app.command(REQUESTER, "run refnud Refund order 1").body
    assert "Unknown task type `refnud`" in unknown and "refund" in unknown
    assert "Say what to do" in slack_app.command(REQUESTER, "run refund").body

    slack_app.command(REQUESTER, "run refund Refund order 77")
    slack_app.settle()
    [task] = _tasks(slack_app)
    status = slack_app.command(REQUESTER, "status").body
    assert task.public_id in status and "waiting" in status
    detail = slack_app.command(REQUESTER, f"status {task.public_id}").body
    assert "issue_refund" in detail and "pending" in detail
    assert "`refund`: *hitl*" in slack_app.command(ALICE, "autonomy").body
    audit = slack_app.command(ALICE, f"audit {task.public_id}").body
    assert "task.submitted" in audit


def test_app_home_shows_what_waits_for_the_viewer(slack_app: SlackApp) -> None:
    slack_app.command(REQUESTER, "run refund Refund order 88")
    slack_app.settle()
    [action] = slack_app.actions()
    slack_app.event({"type": "app_home_opened", "user": ALICE, "tab": "home", "channel": "D0ALICE"}, "Ev0002")
    slack_app.settle()
    home = slack_app.slack.home(ALICE)
    assert home is not None
    assert action.public_id in json.dumps(home.payload)
    slack_app.event({"type": "app_home_opened", "user": REQUESTER, "tab": "home", "channel": "D0REQ"}, "Ev0003")
    slack_app.settle()
    requester_home = slack_app.slack.home(REQUESTER)
    assert requester_home is not None
    assert action.public_id not in json.dumps(requester_home.payload)  # nobody approves their own


def _api(app: SlackApp, body: bytes, token: str | None = API_TOKEN) -> tuple[int, dict[str, object]]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(app.url + "/api/tasks", data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_the_task_api_needs_the_bearer_token_and_a_valid_body(slack_app: SlackApp) -> None:
    assert _api(slack_app, b'{"task_type": "refund", "text": "x"}', token=None)[0] == 401
    assert _api(slack_app, b'{"task_type": "refund", "text": "x"}', token="wrong")[0] == 401
    status, body = _api(slack_app, b'{"task_type": "refund", "txt": "x"}')
    assert status == 422 and body["problems"] == {
        "txt": "unknown field",
        "text": "required: the request, as non-empty text",
    }
    assert _api(slack_app, b"not json")[0] == 422
    status, body = _api(slack_app, b'{"task_type": "nope", "text": "x"}')
    assert status == 422 and "unknown task type 'nope'" in str(body["error"])
    status, body = _api(slack_app, b'{"task_type": "refund", "text": "Refund order 5", "requester": "U0REQUESTER"}')
    assert status == 201
    [task] = _tasks(slack_app)
    assert body == {"task_id": task.public_id}
    with slack_app.services.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Task)) == 1


def test_the_task_api_answers_deep_json_nul_and_lone_surrogates_with_a_422(slack_app: SlackApp) -> None:
    status, body = _api(slack_app, b"[" * 60_000)
    assert (status, body) == (422, {"error": "the body's JSON is nested too deeply"})
    status, body = _api(slack_app, b'{"task_type": "refund", "text": "Refund order \\ud800 5"}')
    assert status == 422 and "lone surrogate" in body["problems"]["text"]
    status, body = _api(slack_app, b'{"task_type": "refund", "text": "Refund order 5\\u0000"}')
    assert status == 422 and "NUL" in body["problems"]["text"]
    status, body = _api(slack_app, b'{"task_type": "refund", "text": "Refund order 5", "requester": "U0\\udfff"}')
    assert status == 422 and "lone surrogate" in body["problems"]["requester"]
    assert _tasks(slack_app) == []


def test_a_task_message_tells_of_its_event_even_when_delivered_late(slack_app: SlackApp) -> None:
    slack_app.command(REQUESTER, "run refund Refund order 1234")
    slack_app.settle()
    [task] = _tasks(slack_app)
    with slack_app.services.sessions.begin() as session:  # a "resumed" notice still queued when the task ends
        row = session.get(Task, task.id)
        row.state, row.final_text = "succeeded", "Refunded."
        outbox.enqueue(session, TaskResumed(task.public_id), slack_app.clock.now() - timedelta(seconds=1))
    slack_app.settle()
    texts = [m.text for m in slack_app.slack.messages(APPROVALS) if m.thread_ts is None]
    assert f"refund task {task.public_id}: resumed" in texts
    assert f"refund task {task.public_id}: done" not in texts  # it is not "done" twice
