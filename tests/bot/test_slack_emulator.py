"""The Slack emulator, driven through the real slack_sdk client (and raw HTTP where the
client would hide the wire format)."""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler, ServerErrorRetryHandler
from slack_sdk.http_retry.builtin_interval_calculators import FixedValueRetryIntervalCalculator
from slack_sdk.webhook import WebhookClient

from tests.fakes.clock import FrozenClock
from tests.fakes.slack_server import SlackEmulator, client_for, seconds, seeded_emulator

CHANNEL = "C0APPROVALS"
SECTION = {"type": "section", "text": {"type": "mrkdwn", "text": "*Refund* order 42"}}


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def slack(clock: FrozenClock) -> Iterator[SlackEmulator]:
    with seeded_emulator(now=seconds(clock)) as emulator:
        emulator.add_usergroup("S0LEADS", "payments-leads", ["U0ALICE", "U0BOB"])
        yield emulator


def slack_error(excinfo: pytest.ExceptionInfo[SlackApiError]) -> Any:
    return excinfo.value.response["error"]


def post_raw(url: str, body: bytes, content_type: str, token: str | None = None) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": content_type} | ({"Authorization": f"Bearer {token}"} if token else {})
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def test_post_update_and_history(slack: SlackEmulator) -> None:
    client = client_for(slack)
    posted = client.chat_postMessage(channel=CHANNEL, text="Refund 42?", blocks=[SECTION])
    assert posted["channel"] == CHANNEL
    assert re.fullmatch(r"\d{10}\.\d{6}", posted["ts"])
    assert posted["message"]["blocks"] == [SECTION]

    client.chat_update(channel=CHANNEL, ts=posted["ts"], text="Approved by <@U0ALICE>")
    history = client.conversations_history(channel=CHANNEL)["messages"]
    assert [m["text"] for m in history] == ["Approved by <@U0ALICE>"]
    assert "edited" in history[0]

    message = slack.message(CHANNEL, posted["ts"])
    assert [v.text for v in message.versions] == ["Refund 42?", "Approved by <@U0ALICE>"]
    assert [e.via for e in message.edits] == ["chat.update"]
    assert slack.calls_to("chat.update")[0]["ts"] == posted["ts"]

    with pytest.raises(SlackApiError) as missing:
        client.chat_update(channel=CHANNEL, ts="1.000001", text="x")
    assert slack_error(missing) == "message_not_found"
    with pytest.raises(SlackApiError) as unknown:
        client.chat_postMessage(channel="C0NOWHERE", text="x")
    assert slack_error(unknown) == "channel_not_found"


def test_ts_is_strictly_increasing_on_a_frozen_clock(slack: SlackEmulator) -> None:
    client = client_for(slack)
    stamps = [client.chat_postMessage(channel=CHANNEL, text=str(i))["ts"] for i in range(3)]
    assert stamps == sorted(stamps, key=float)
    assert len(set(stamps)) == 3
    assert stamps[1].endswith("000100")


def test_dm_via_conversations_open(slack: SlackEmulator) -> None:
    client = client_for(slack)
    dm = client.conversations_open(users="U0ALICE")["channel"]["id"]
    assert dm.startswith("D")
    assert client.conversations_open(users=["U0ALICE"])["channel"]["id"] == dm == slack.dm("U0ALICE")

    posted = client.chat_postMessage(channel="U0ALICE", text="Your refund needs a look")
    assert posted["channel"] == dm
    with pytest.raises(SlackApiError) as by_user:
        client.chat_update(channel="U0ALICE", ts=posted["ts"], text="done")
    assert slack_error(by_user) == "channel_not_found"
    client.chat_update(channel=dm, ts=posted["ts"], text="done")
    assert [m.text for m in slack.messages(dm)] == ["done"]

    with pytest.raises(SlackApiError) as nobody:
        client.conversations_open(users="U0NOBODY")
    assert slack_error(nobody) == "user_not_found"


def test_thread_replies(slack: SlackEmulator) -> None:
    client = client_for(slack)
    parent = client.chat_postMessage(channel=CHANNEL, text="card")["ts"]
    first = client.chat_postMessage(channel=CHANNEL, text="reminder", thread_ts=parent)
    assert first["message"]["thread_ts"] == parent
    client.chat_postMessage(channel=CHANNEL, text="second", thread_ts=first["ts"])  # a reply's ts threads too

    replies = client.conversations_replies(channel=CHANNEL, ts=parent)["messages"]
    assert [m["text"] for m in replies] == ["card", "reminder", "second"]
    history = client.conversations_history(channel=CHANNEL)["messages"]
    assert [(m["text"], m["reply_count"]) for m in history] == [("card", 2)]
    assert [m.text for m in slack.thread(CHANNEL, parent)] == ["card", "reminder", "second"]

    with pytest.raises(SlackApiError) as bad:
        client.chat_postMessage(channel=CHANNEL, text="x", thread_ts="1.000001")
    assert slack_error(bad) == "invalid_thread_ts"


def test_ephemeral(slack: SlackEmulator) -> None:
    client = client_for(slack)
    reply = client.chat_postEphemeral(channel=CHANNEL, user="U0BOB", text="You cannot approve your own request")
    (ephemeral,) = slack.ephemerals(user="U0BOB")
    assert ephemeral.ts == reply["message_ts"]
    assert (ephemeral.channel, ephemeral.text) == (CHANNEL, "You cannot approve your own request")
    assert slack.ephemerals(user="U0ALICE") == []
    assert slack.messages(CHANNEL) == []


def modal(blocks: int = 1) -> dict[str, Any]:
    title = {"type": "plain_text", "text": "Reject"}
    return {"type": "modal", "callback_id": "reject", "title": title, "blocks": [SECTION] * blocks}


def test_views_open_exchanges_a_fresh_trigger_once(slack: SlackEmulator, clock: FrozenClock) -> None:
    client = client_for(slack)
    trigger = slack.new_trigger_id(user="U0ALICE")
    clock.advance(2.9)
    view = client.views_open(trigger_id=trigger, view=modal())["view"]
    assert view["id"].startswith("V") and view["callback_id"] == "reject"
    assert [v.id for v in slack.views] == [view["id"]]
    assert slack.views[0].user == "U0ALICE"

    with pytest.raises(SlackApiError) as again:
        client.views_open(trigger_id=trigger, view=modal())
    assert slack_error(again) == "exchanged_trigger_id"

    updated = client.views_update(view_id=view["id"], hash=view["hash"], view=modal(blocks=2))["view"]
    assert len(updated["blocks"]) == 2
    with pytest.raises(SlackApiError) as stale:
        client.views_update(view_id=view["id"], hash=view["hash"], view=modal())
    assert slack_error(stale) == "hash_conflict"

    pushed = client.views_push(trigger_id=slack.new_trigger_id(), view=modal())["view"]
    assert (pushed["root_view_id"], pushed["previous_view_id"]) == (view["id"], view["id"])


def test_views_open_rejects_expired_and_unknown_triggers(slack: SlackEmulator, clock: FrozenClock) -> None:
    client = client_for(slack)
    trigger = slack.new_trigger_id()
    clock.advance(3.5)
    with pytest.raises(SlackApiError) as expired:
        client.views_open(trigger_id=trigger, view=modal())
    assert slack_error(expired) == "expired_trigger_id"
    with pytest.raises(SlackApiError) as unknown:
        client.views_open(trigger_id="123.456.abc", view=modal())
    assert slack_error(unknown) == "invalid_trigger_id"
    assert slack.views == []


def test_any_trigger_when_not_strict() -> None:
    with SlackEmulator(strict_triggers=False) as slack:
        assert client_for(slack).views_open(trigger_id="anything", view=modal())["ok"]


def test_views_publish_sets_app_home(slack: SlackEmulator) -> None:
    client = client_for(slack)
    home = {"type": "home", "blocks": [SECTION]}
    first = client.views_publish(user_id="U0ALICE", view=home)["view"]
    second = client.views_publish(user_id="U0ALICE", view={**home, "blocks": [SECTION, {"type": "divider"}]})
    assert second["view"]["id"] == first["id"]
    stored = slack.home("U0ALICE")
    assert stored is not None and len(stored.payload["blocks"]) == 2
    assert slack.home("U0BOB") is None
    with pytest.raises(SlackApiError) as modal_as_home:
        client.views_publish(user_id="U0ALICE", view=modal())
    assert slack_error(modal_as_home) == "invalid_arguments"


def test_usergroups_and_users(slack: SlackEmulator) -> None:
    client = client_for(slack)
    (group,) = client.usergroups_list(include_users=True)["usergroups"]
    assert (group["id"], group["handle"], group["users"]) == ("S0LEADS", "payments-leads", ["U0ALICE", "U0BOB"])
    assert "users" not in client.usergroups_list()["usergroups"][0]
    assert client.usergroups_users_list(usergroup="S0LEADS")["users"] == ["U0ALICE", "U0BOB"]
    with pytest.raises(SlackApiError) as missing:
        client.usergroups_users_list(usergroup="S0NONE")
    assert slack_error(missing) == "no_such_subteam"

    user = client.users_info(user="U0ALICE")["user"]
    assert (user["name"], user["real_name"]) == ("alice", "Alice Example")
    assert client.auth_test()["user_id"] == "U0BOT"


def test_auth_and_unknown_methods(slack: SlackEmulator) -> None:
    with pytest.raises(SlackApiError) as no_token:
        client_for(slack, token="").auth_test()
    assert slack_error(no_token) == "not_authed"
    with pytest.raises(SlackApiError) as user_token:
        client_for(slack, token="xoxp-123").auth_test()
    assert slack_error(user_token) == "invalid_auth"
    with pytest.raises(SlackApiError) as unknown:
        client_for(slack).api_call("chat.teleport")
    assert (unknown.value.response.status_code, slack_error(unknown)) == (200, "unknown_method")

    with SlackEmulator(token="xoxb-only-this") as strict:
        assert client_for(strict, token="xoxb-only-this").auth_test()["ok"]
        with pytest.raises(SlackApiError) as other:
            client_for(strict).auth_test()
        assert slack_error(other) == "invalid_auth"


def test_form_bodies_token_param_and_bad_json(slack: SlackEmulator) -> None:
    body = b"token=xoxb-form&channel=C0APPROVALS&text=hello&blocks=%5B%7B%22type%22%3A%22divider%22%7D%5D"
    status, reply = post_raw(slack.api_url + "chat.postMessage", body, "application/x-www-form-urlencoded")
    assert (status, reply["ok"]) == (200, True)
    assert slack.messages(CHANNEL)[0].blocks == [{"type": "divider"}]
    assert "token" not in slack.calls_to("chat.postMessage")[0]

    status, reply = post_raw(slack.api_url + "chat.postMessage", b"{nope", "application/json", token="xoxb-x")
    assert (status, reply) == (200, {"ok": False, "error": "invalid_json"})


def test_payload_validation(slack: SlackEmulator) -> None:
    client = client_for(slack)
    cases: list[tuple[dict[str, Any], str]] = [
        ({}, "no_text"),  # blocks without text are fine (the client warns); neither is not
        ({"text": "x", "blocks": [SECTION] * 51}, "invalid_blocks"),
        ({"text": "x", "blocks": [{"text": "no type"}]}, "invalid_blocks"),
        ({"text": "x", "blocks": [{"type": "no_such_block"}]}, "invalid_blocks"),
        (
            {"text": "x", "blocks": [{**SECTION, "block_id": "a"}, {"type": "divider", "block_id": "a"}]},
            "invalid_blocks",
        ),
        ({"text": "x", "blocks": [{"type": "actions", "elements": [button("b" * 76)]}]}, "invalid_blocks"),
    ]
    for params, error in cases:
        status, reply = post_raw(
            slack.api_url + "chat.postMessage",
            json.dumps({"channel": CHANNEL, **params}).encode(),
            "application/json",
            token="xoxb-test",
        )
        assert (status, reply["error"]) == (200, error), params
    with pytest.raises(SlackApiError) as too_long:
        client.chat_postMessage(channel=CHANNEL, text="x", blocks=[SECTION] * 51)
    assert too_long.value.response["response_metadata"]["messages"]
    with pytest.raises(SlackApiError) as big_modal:
        client.views_open(trigger_id=slack.new_trigger_id(), view=modal(blocks=101))
    assert slack_error(big_modal) == "invalid_arguments"
    assert slack.messages(CHANNEL) == []
    assert slack.views == []


def button(text: str) -> dict[str, Any]:
    return {"type": "button", "action_id": "approve", "value": "A1", "text": {"type": "plain_text", "text": text}}


def test_rate_limit_surfaces_as_an_error_and_changes_nothing(slack: SlackEmulator) -> None:
    slack.fail("chat.postMessage", status=429, retry_after=1)
    with pytest.raises(SlackApiError) as limited:
        client_for(slack).chat_postMessage(channel=CHANNEL, text="card")
    response = limited.value.response
    assert (response.status_code, response["error"], response.headers["Retry-After"]) == (429, "ratelimited", "1")
    assert slack.messages(CHANNEL) == []
    assert [name for name, _ in slack.faulted_calls] == ["chat.postMessage"]
    assert slack.calls == []


def test_rate_limit_retry_handler_posts_exactly_once(slack: SlackEmulator) -> None:
    slack.fail("chat.postMessage", status=429, retry_after=0, times=1)
    client = client_for(slack, RateLimitErrorRetryHandler(max_retry_count=2))
    posted = client.chat_postMessage(channel=CHANNEL, text="card")
    assert [m.ts for m in slack.messages(CHANNEL)] == [posted["ts"]]
    assert (len(slack.faulted_calls), len(slack.calls_to("chat.postMessage"))) == (1, 1)


def test_server_errors_are_retried(slack: SlackEmulator) -> None:
    slack.fail(status=500, times=2)
    with pytest.raises(SlackApiError) as failed:
        client_for(slack).chat_postMessage(channel=CHANNEL, text="card")
    assert failed.value.response.status_code == 500

    retry = ServerErrorRetryHandler(max_retry_count=2, interval_calculator=FixedValueRetryIntervalCalculator(0.01))
    client_for(slack, retry).chat_postMessage(channel=CHANNEL, text="card")
    assert [m.text for m in slack.messages(CHANNEL)] == ["card"]
    assert len(slack.faulted_calls) == 2


def test_fail_for_a_window_of_the_injected_clock(slack: SlackEmulator, clock: FrozenClock) -> None:
    slack.fail_for(30, status=429)
    client = client_for(slack)
    clock.advance(10)
    with pytest.raises(SlackApiError) as limited:
        client.auth_test()
    assert limited.value.response.headers["Retry-After"] == "20"
    clock.advance(20)
    assert client.auth_test()["ok"]


def test_hang_delays_but_still_applies_the_call(slack: SlackEmulator) -> None:
    slack.hang("chat.postMessage", 0.2)
    body = json.dumps({"channel": CHANNEL, "text": "slow"}).encode()
    request = urllib.request.Request(
        slack.api_url + "chat.postMessage",
        data=body,
        headers={"Content-Type": "application/json", "Authorization": "Bearer xoxb-test"},
    )
    with pytest.raises(TimeoutError):
        urllib.request.urlopen(request, timeout=0.05)
    deadline = time.monotonic() + 2
    while not slack.messages(CHANNEL) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [m.text for m in slack.messages(CHANNEL)] == ["slow"]  # the success the client never saw


def test_hold_keeps_a_call_unanswered_until_released_then_applies_it(slack: SlackEmulator) -> None:
    held = slack.hold("chat.postMessage")
    client = client_for(slack)
    client.timeout = 1
    with pytest.raises(TimeoutError):
        client.chat_postMessage(channel=CHANNEL, text="held")
    assert held.arrived.is_set() and not held.landed.is_set()
    assert slack.messages(CHANNEL) == [] and slack.calls_to("chat.postMessage") == []  # however long it waits
    held.release()
    assert held.landed.wait(10)
    assert [m.text for m in slack.messages(CHANNEL)] == ["held"]  # the success the client never saw
    client.chat_postMessage(channel=CHANNEL, text="next")  # `times=1`: the next call is not held
    assert [m.text for m in slack.messages(CHANNEL)] == ["held", "next"]


def test_closing_the_emulator_lets_held_calls_go(clock: FrozenClock) -> None:
    slack = SlackEmulator(now=seconds(clock))
    held = slack.hold(None)
    answered: list[object] = []
    caller = threading.Thread(target=lambda: answered.append(slack.call("auth.test", {}, "xoxb-test").status))
    caller.start()
    assert held.arrived.wait(10)
    slack.close()
    caller.join(10)
    assert not caller.is_alive() and answered == [200]


def test_response_url_replace_delete_and_ephemeral(slack: SlackEmulator) -> None:
    client = client_for(slack)
    ts = client.chat_postMessage(channel=CHANNEL, text="card", blocks=[SECTION])["ts"]
    url = slack.new_response_url(channel=CHANNEL, ts=ts, user="U0BOB")
    assert url.startswith(slack.url + "response/")

    replaced = WebhookClient(url).send(text="Approved by <@U0ALICE>", replace_original=True)
    assert replaced.status_code == 200
    message = slack.message(CHANNEL, ts)
    assert (message.text, message.blocks, message.edits[0].via) == ("Approved by <@U0ALICE>", [], "response_url")

    WebhookClient(url).send(text="Only you can see this")
    assert [e.text for e in slack.ephemerals(user="U0BOB")] == ["Only you can see this"]

    WebhookClient(url).send(delete_original=True)
    assert slack.messages(CHANNEL) == []
    assert [p.get("delete_original") for p in slack.calls_to("response_url")] == [None, None, True]
    assert WebhookClient(slack.url + "response/R404").send(text="x").status_code == 404


def test_concurrent_posts_get_distinct_ts(slack: SlackEmulator) -> None:
    stamps: list[str] = []

    def post() -> None:
        stamps.append(client_for(slack).chat_postMessage(channel=CHANNEL, text="hi")["ts"])

    threads = [threading.Thread(target=post) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(stamps)) == 16
    assert len(slack.messages(CHANNEL)) == len(slack.calls) == 16
