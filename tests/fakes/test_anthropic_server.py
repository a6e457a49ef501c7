"""The fake Messages API, exercised through the real `anthropic` SDK."""

from __future__ import annotations

import contextlib
import http.client
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
from anthropic.types import Message, TextBlock, ToolUseBlock

from tests.fakes.anthropic_server import FakeAnthropic, text_block, tool_use_block

MODEL = "claude-sonnet-4-6"
HELLO = [{"role": "user", "content": "Refund order A1"}]


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as server:
        yield server


def make_client(fake: FakeAnthropic, **options: Any) -> anthropic.Anthropic:
    options.setdefault("max_retries", 0)
    return anthropic.Anthropic(api_key="test-key", base_url=fake.url, **options)


def create(client: anthropic.Anthropic, messages: list[Any] | None = None, **extra: Any) -> Message:
    return client.messages.create(model=MODEL, max_tokens=512, messages=messages or HELLO, **extra)  # type: ignore[arg-type]


def raw_post(fake: FakeAnthropic, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    host, port = fake.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        sent = {"content-type": "application/json", "anthropic-version": "2023-06-01", **(headers or {})}
        conn.request("POST", "/v1/messages", body=json.dumps(body), headers=sent)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_text_reply_is_parsed_into_a_message_with_a_text_block(fake: FakeAnthropic) -> None:
    fake.reply_text("done", input_tokens=12, output_tokens=3)
    with make_client(fake) as client:
        message = create(client)

    assert isinstance(message, Message)
    assert message.id.startswith("msg_")
    assert message.model == MODEL
    assert message.role == "assistant"
    assert message.stop_reason == "end_turn"
    assert message.content == [TextBlock(type="text", text="done")]
    assert (message.usage.input_tokens, message.usage.output_tokens) == (12, 3)
    assert message.usage.cache_read_input_tokens == 0
    assert (message._request_id or "").startswith("req_")


def test_tool_use_reply_becomes_a_tool_use_block(fake: FakeAnthropic) -> None:
    tool_id = fake.reply_tool_use("lookup_order", {"order_id": "A1"}, text="Let me look.")
    with make_client(fake) as client:
        message = create(client)

    assert message.stop_reason == "tool_use"
    text, call = message.content
    assert isinstance(text, TextBlock)
    assert text.text == "Let me look."
    assert isinstance(call, ToolUseBlock)
    assert (call.id, call.name, call.input) == (tool_id, "lookup_order", {"order_id": "A1"})
    assert min(message.usage.input_tokens, message.usage.output_tokens) > 0  # rough default counts


def test_several_tool_uses_in_one_reply_and_their_results_are_accepted(fake: FakeAnthropic) -> None:
    ids = fake.reply_blocks(
        [text_block("Two lookups."), tool_use_block("lookup_order", {"order_id": "A1"}), tool_use_block("ping", {})]
    )
    fake.reply_text("All done.")
    with make_client(fake) as client:
        first = create(client)
        results = [{"type": "tool_result", "tool_use_id": block_id, "content": "ok"} for block_id in ids]
        follow_up = [*HELLO, {"role": "assistant", "content": first.content}, {"role": "user", "content": results}]
        second = create(client, follow_up)

    assert [type(b) for b in first.content] == [TextBlock, ToolUseBlock, ToolUseBlock]
    assert [b.id for b in first.content if isinstance(b, ToolUseBlock)] == ids
    assert first.stop_reason == "tool_use"
    assert second.content == [TextBlock(type="text", text="All done.")]
    assert fake.pending == 0


def test_missing_tool_result_is_a_400_like_the_real_api(fake: FakeAnthropic) -> None:
    fake.reply_text("never sent")
    call = {"type": "tool_use", "id": "toolu_1", "name": "ping", "input": {}}
    messages = [*HELLO, {"role": "assistant", "content": [call]}, {"role": "user", "content": "go on"}]
    with make_client(fake) as client, pytest.raises(anthropic.BadRequestError) as caught:
        create(client, messages)

    assert caught.value.status_code == 400
    assert caught.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert "`tool_use` ids were found without `tool_result` blocks immediately after: toolu_1" in caught.value.message
    assert fake.pending == 1  # a rejected request uses no scripted reply


@pytest.mark.parametrize(
    ("messages", "complaint"),
    [
        ([{"role": "assistant", "content": "hi"}], "first message"),
        ([*HELLO, {"role": "user", "content": "again"}], "alternate"),
        (
            [
                *HELLO,
                {"role": "assistant", "content": "ok"},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_x", "content": "?"}]},
            ],
            "unexpected `tool_use_id`",
        ),
        (
            [
                *HELLO,
                {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "ping", "input": {}}]},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "first"},
                        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"},
                    ],
                },
            ],
            "must come first",
        ),
        ([*HELLO, {"role": "assistant", "content": []}, {"role": "user", "content": "x"}], "non-empty content"),
    ],
)
def test_malformed_conversations_are_rejected(fake: FakeAnthropic, messages: list[Any], complaint: str) -> None:
    with make_client(fake) as client, pytest.raises(anthropic.BadRequestError, match=complaint):
        create(client, messages)


def test_required_fields_and_api_key_are_checked(fake: FakeAnthropic) -> None:
    complete = {"model": MODEL, "max_tokens": 10, "messages": HELLO}
    for missing in ("model", "max_tokens", "messages"):
        body = {k: v for k, v in complete.items() if k != missing}
        status, payload = raw_post(fake, body, {"x-api-key": "test-key"})
        assert (status, payload["error"]["type"]) == (400, "invalid_request_error")
        assert payload["error"]["message"] == f"{missing}: Field required"

    status, payload = raw_post(fake, complete)
    assert (status, payload["type"], payload["error"]["type"]) == (401, "error", "authentication_error")


def test_streaming_is_refused_clearly(fake: FakeAnthropic) -> None:
    with make_client(fake) as client, pytest.raises(anthropic.BadRequestError, match="does not support streaming"):
        create(client, stream=True)


def test_rate_limit_surfaces_without_retries_and_is_retried_with_them(fake: FakeAnthropic) -> None:
    fake.fail(status=429, retry_after=1)
    with make_client(fake, max_retries=0) as client, pytest.raises(anthropic.RateLimitError) as caught:
        create(client)
    assert caught.value.response.headers["retry-after"] == "1"
    assert caught.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]

    fake.fail(status=429, retry_after=0.01)
    fake.reply_text("after the wait")
    with make_client(fake, max_retries=2) as client:
        message = create(client)
    assert message.content == [TextBlock(type="text", text="after the wait")]
    assert [r.headers["x-stainless-retry-count"] for r in fake.requests[1:]] == ["0", "1"]


def test_overloaded_and_server_errors(fake: FakeAnthropic) -> None:
    fake.fail(status=529)
    fake.fail(status=500)
    with make_client(fake) as client:
        with pytest.raises(anthropic.InternalServerError) as overloaded:
            create(client)
        with pytest.raises(anthropic.InternalServerError) as broken:
            create(client)

    assert overloaded.value.status_code == 529
    assert isinstance(overloaded.value, anthropic.OverloadedError)
    assert overloaded.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    assert broken.value.status_code == 500
    assert broken.value.body["error"]["type"] == "api_error"  # type: ignore[index]


def test_fail_for_the_next_n_requests_then_recover(fake: FakeAnthropic) -> None:
    fake.fail(status=529, times=2, retry_after=0.01)
    fake.reply_text("back")
    with make_client(fake, max_retries=2) as client:
        assert create(client).content == [TextBlock(type="text", text="back")]
    assert len(fake.requests) == 3


def test_unavailable_until_restored(fake: FakeAnthropic) -> None:
    fake.reply_text("finally")
    fake.unavailable()
    with make_client(fake) as client:
        for _ in range(2):
            with pytest.raises(anthropic.OverloadedError):
                create(client)
        fake.restore()
        assert create(client).content == [TextBlock(type="text", text="finally")]


def test_hang_times_the_client_out_and_close_is_prompt() -> None:
    with FakeAnthropic() as fake:
        fake.hang(30)
        with make_client(fake, timeout=0.2) as client, pytest.raises(anthropic.APITimeoutError):
            create(client)
        fake.hang(30)
        started = threading.Event()
        # A second request still hangs in the server while we close it.
        hanging = threading.Thread(target=_call_ignoring_errors, args=(fake, started), daemon=True)
        hanging.start()
        started.wait(2)
        _wait_for(lambda: len(fake.requests) == 2)
        began = time.monotonic()
    assert time.monotonic() - began < 1
    hanging.join(2)
    assert not hanging.is_alive()


def test_hang_with_a_reply_answers_late(fake: FakeAnthropic) -> None:
    fake.hang(0.1, then={"content": [text_block("slow")]})
    with make_client(fake, timeout=5) as client:
        assert create(client).content == [TextBlock(type="text", text="slow")]


def test_running_out_of_script_fails_loudly_without_retries(fake: FakeAnthropic) -> None:
    with make_client(fake, max_retries=2) as client, pytest.raises(anthropic.InternalServerError) as caught:
        create(client)
    assert "FakeAnthropic: no scripted reply left" in caught.value.message
    assert len(fake.requests) == 1


def test_responder_answers_once_the_queue_is_empty(fake: FakeAnthropic) -> None:
    fake.reply_text("scripted first")
    fake.respond_with(lambda request: {"content": [text_block(f"echo: {request['messages'][-1]['content']}")]})
    with make_client(fake) as client:
        assert create(client).content[0] == TextBlock(type="text", text="scripted first")
        assert create(client).content[0] == TextBlock(type="text", text="echo: Refund order A1")


def test_requests_are_recorded_with_system_prompt_and_tools(fake: FakeAnthropic) -> None:
    fake.reply_text("ok")
    tools = [{"name": "ping", "description": "Ping", "input_schema": {"type": "object", "properties": {}}}]
    with make_client(fake) as client:
        create(client, system="You handle refunds.", tools=tools)

    request = fake.last_request
    assert (request.method, request.path) == ("POST", "/v1/messages")
    assert request.api_key == "test-key"  # anthropic 2.x sends it as `Authorization: Bearer`
    assert request.system == "You handle refunds."
    assert request.tools == tools
    assert request.messages == HELLO
    assert request.body["model"] == MODEL
    assert fake.requests == [request]


def test_bad_reply_specs_fail_in_the_test_not_in_the_server(fake: FakeAnthropic) -> None:
    with pytest.raises(ValueError, match="content"):
        fake.reply({"content": "not a list"})
    with pytest.raises(ValueError, match="stop_reason"):
        fake.reply_blocks([text_block("x")], stop_reason="bored")


def _call_ignoring_errors(fake: FakeAnthropic, started: threading.Event) -> None:
    with make_client(fake, timeout=10) as client:
        started.set()
        with contextlib.suppress(anthropic.APIConnectionError):  # the fake drops the connection
            create(client)


def _wait_for(condition: Any, timeout: float = 2) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


# -- prompt caching -----------------------------------------------------------------------

MARK = {"type": "ephemeral"}
SYSTEM = [{"type": "text", "text": "You handle refunds. " * 50, "cache_control": MARK}]


def _usage(message: Message) -> tuple[int, int, int]:
    usage = message.usage
    return usage.input_tokens, usage.cache_read_input_tokens or 0, usage.cache_creation_input_tokens or 0


def _texts(count: int, *, marked_last: bool = True) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [{"type": "text", "text": f"block {n}"} for n in range(count)]
    if marked_last:
        blocks[-1] = {**blocks[-1], "cache_control": MARK}
    return blocks


def test_a_marked_prefix_is_written_once_then_read(fake: FakeAnthropic) -> None:
    fake.respond_with(lambda request: {"content": [text_block("ok")]})
    with make_client(fake) as client:
        first = _usage(create(client, system=SYSTEM))
        second = _usage(create(client, [{"role": "user", "content": "Another question"}], system=SYSTEM))
        plain = _usage(create(client, system="You handle refunds."))

    input_1, read_1, written_1 = first
    assert read_1 == 0 and written_1 > 0 and input_1 > 0  # the unmarked message after the mark is input
    assert second[1:] == (written_1, 0)
    assert plain[1:] == (0, 0)  # nothing marked: nothing cached
    assert fake.last_request.system_text == "You handle refunds."


def test_reads_look_back_at_most_20_blocks_from_a_mark(fake: FakeAnthropic) -> None:
    fake.respond_with(lambda request: {"content": [text_block("ok")]})
    with make_client(fake) as client:
        _, _, cached = _usage(create(client, [{"role": "user", "content": _texts(1)}]))
        near = [{"role": "user", "content": [*_texts(1, marked_last=False), *_texts(19)]}]
        far = [{"role": "user", "content": [*_texts(1, marked_last=False), *_texts(25)]}]
        assert _usage(create(client, far))[1] == 0  # 25 blocks after the cached one: not found
        assert _usage(create(client, near))[1] == cached


def test_the_cache_expires_five_minutes_after_its_last_use() -> None:
    now = [1000.0]
    with FakeAnthropic(clock=lambda: now[0]) as fake:
        fake.respond_with(lambda request: {"content": [text_block("ok")]})
        with make_client(fake) as client:
            _, _, written = _usage(create(client, system=SYSTEM))
            now[0] += 299
            assert _usage(create(client, system=SYSTEM))[1:] == (written, 0)  # a read refreshes it
            now[0] += 299
            assert _usage(create(client, system=SYSTEM))[1:] == (written, 0)
            now[0] += 301
            assert _usage(create(client, system=SYSTEM))[1:] == (0, written)


def test_a_prefix_under_the_minimum_length_is_not_cached() -> None:
    with FakeAnthropic(min_cache_tokens=100_000) as fake:
        fake.respond_with(lambda request: {"content": [text_block("ok")]})
        with make_client(fake) as client:
            for _ in range(2):
                assert _usage(create(client, system=SYSTEM))[1:] == (0, 0)


def test_more_than_four_breakpoints_or_an_unknown_type_is_a_400(fake: FakeAnthropic) -> None:
    fake.reply_text("never sent")
    with make_client(fake) as client:
        with pytest.raises(anthropic.BadRequestError, match="A maximum of 4 blocks with cache_control"):
            create(client, [{"role": "user", "content": [{**b, "cache_control": MARK} for b in _texts(5)]}])
        bad = [{"type": "text", "text": "x", "cache_control": {"type": "forever"}}]
        with pytest.raises(anthropic.BadRequestError, match="ephemeral"):
            create(client, system=bad)
    assert fake.pending == 1
