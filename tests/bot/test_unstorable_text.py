"""Text no database can store (a NUL, a lone surrogate) and JSON no parser should chase (a
modal's metadata nested thousands deep): refused before a listener writes anything, on SQLite
and PostgreSQL alike. Found by `chaos.fuzz_inputs`' surrogate and deep-JSON shapes."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from bot import action_ids
from core.models import AuditEvent, Decision, SlackEvent, Task
from core.storable import first_unstorable
from tests.bot.slack_app import ALICE, APPROVALS, REQUESTER, SlackApp


def _counts(app: SlackApp) -> tuple[int, int, int, int]:
    with app.services.sessions() as session:
        return tuple(  # type: ignore[return-value]
            session.scalar(select(func.count()).select_from(model)) or 0
            for model in (Task, Decision, SlackEvent, AuditEvent)
        )


@pytest.mark.parametrize("spoiler", ["\x00", "\ud800", "\udc00\ud800"])
def test_a_command_or_a_mention_with_text_no_database_stores_starts_nothing(slack_app: SlackApp, spoiler: str) -> None:
    before = _counts(slack_app)
    if "\x00" in spoiler:  # a form can carry a NUL (%00); a surrogate is not UTF-8 there
        reply = slack_app.command(REQUESTER, f"run refund Refund order{spoiler} 1")
        nul = "the request's body.text contains a NUL character (\\u0000)"
        assert (reply.status, reply.json()["error"]) == (400, nul)
    mention = {"type": "app_mention", "user": REQUESTER, "channel": APPROVALS, "ts": "1700000001.000300"}
    reply = slack_app.event({**mention, "text": f"<@U0BOT> refund Refund order {spoiler}2"}, "Ev0SPOILED1")
    assert reply.status == 400
    assert reply.json()["error"].startswith("the request's body.event.text contains a ")
    slack_app.settle()
    assert _counts(slack_app) == before


def test_a_rejection_whose_reason_holds_a_nul_decides_nothing(slack_app: SlackApp) -> None:
    slack_app.command(REQUESTER, "run refund Refund order 77")
    slack_app.settle()
    [action] = slack_app.actions()
    view = {
        "type": "modal",
        "callback_id": action_ids.REJECT_MODAL,
        "private_metadata": json.dumps({"action_id": action.public_id, "params_hash": action.params_hash}),
    }
    reply = slack_app.submit(ALICE, view, {"reason": {"reason": {"type": "plain_text_input", "value": "no\x00pe"}}})
    assert reply.status == 400
    assert "NUL" in reply.json()["error"]
    [after] = slack_app.actions()
    assert after.state == "pending"
    with slack_app.services.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Decision)) == 0


@pytest.mark.parametrize("callback_id", [action_ids.REJECT_MODAL, action_ids.EDIT_MODAL])
@pytest.mark.parametrize("metadata", ["[" * 50_000, '{"a":' * 20_000, '{"action_id": ' + "9" * 5000 + "}"])
def test_modal_metadata_nested_too_deep_or_with_a_huge_integer_is_a_form_error(
    slack_app: SlackApp, callback_id: str, metadata: str
) -> None:
    view = {"type": "modal", "callback_id": callback_id, "private_metadata": metadata}
    values = {"reason": {"reason": {"type": "plain_text_input", "value": "no"}}}
    reply = slack_app.submit(ALICE, view, values)
    assert reply.status == 200
    answer = reply.json()  # the listener's own answer, not the catch-all's empty one
    assert answer["response_action"] == "errors"
    assert "metadata is not JSON" in json.dumps(answer)


def test_first_unstorable_names_where_and_walks_without_recursion() -> None:
    assert first_unstorable({"a": ["ok", {"b": "x\x00"}]}) == ("body.a[1].b", "contains a NUL character (\\u0000)")
    assert first_unstorable({"\ud800": 1})[0] == "body key '\\ud800'"  # type: ignore[index]
    deep: object = "\udfff"
    for _ in range(100_000):
        deep = [deep]
    found = first_unstorable({"v": deep})
    assert found is not None and found[1].startswith("contains a lone surrogate")
    assert first_unstorable({"fine": ["text", 1, 2.5, None, True, {"é": "🦄"}]}) is None
