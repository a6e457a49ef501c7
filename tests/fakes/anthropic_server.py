"""A local stand-in for Anthropic's Messages API, driven through the real `anthropic` SDK.

    with FakeAnthropic() as fake:
        tool_use_id = fake.reply_tool_use("lookup_order", {"order_id": "A1"})
        fake.fail(status=429, retry_after=0.01)
        fake.reply_text("Refunded.")
        client = anthropic.Anthropic(api_key="test-key", base_url=fake.url, max_retries=2)

`POST /v1/messages` answers in the API's wire format. Requests are checked the way the real
API checks them (required fields, alternating roles, every `tool_use` answered by a
`tool_result` in the next user turn) before any scripted entry is used, so a 400 never eats
a reply. Scripted entries (replies, faults, hangs) are used once each, in order; when none is
left, the responder set with `respond_with` answers; without one the fake answers 500 with
`x-should-retry: false`, so a test that runs out of script fails at once instead of retrying.

Prompt caching is accounted as the API does it (`PromptCache`): the prompt is a sequence of
blocks in the order tools → system → messages; a block marked `cache_control` (at most 4)
stores the prefix up to it for 5 minutes (`"ttl": "1h"`: an hour), refreshed on each read; a
request reads the longest stored prefix found at a mark or up to 20 blocks before one, writes
the prefixes at its marks beyond that, and `usage` says so (`cache_read_input_tokens`,
`cache_creation_input_tokens`, and `input_tokens` for the rest). Token counts are a rough
len(json)/4 per block; a prefix shorter than `min_cache_tokens` is not stored (the API's
minimum is 1024 to 4096 tokens depending on the model; the fake's default is 0). Time is the
`clock` given (seconds), so a test moves past the lifetime without sleeping.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import threading
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, cast

JSON = dict[str, Any]
Responder = Callable[[JSON], Mapping[str, Any]]

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
STOP_REASONS = {"end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn", "refusal"}


def text_block(text: str) -> JSON:
    return {"type": "text", "text": text}


def tool_use_block(name: str, input: Mapping[str, Any], *, id: str | None = None) -> JSON:
    return {"type": "tool_use", "id": id or _new_id("toolu_"), "name": name, "input": dict(input)}


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: JSON  # parsed JSON body ({} when it was not a JSON object)
    received_at: float  # time.monotonic(), to measure gaps between retries

    @property
    def api_key(self) -> str | None:
        """From `x-api-key`, or `Authorization: Bearer …`, which is how anthropic 2.x sends it."""
        bearer = self.headers.get("authorization", "")
        return self.headers.get("x-api-key") or (
            bearer.removeprefix("Bearer ") if bearer.startswith("Bearer ") else None
        )

    @property
    def messages(self) -> list[JSON]:
        return list(self.body.get("messages") or [])

    @property
    def system(self) -> Any:
        return self.body.get("system")

    @property
    def tools(self) -> list[JSON]:
        return list(self.body.get("tools") or [])

    @property
    def system_text(self) -> str:
        """The system prompt as text, whether it was sent as a string or as text blocks."""
        system = self.system
        if isinstance(system, list):
            return "\n".join(str(block.get("text", "")) for block in system if isinstance(block, dict))
        return str(system or "")


@dataclass(frozen=True)
class _Reply:
    spec: JSON


@dataclass(frozen=True)
class _Fault:
    status: int
    error_type: str
    message: str
    retry_after: float | None = None


@dataclass(frozen=True)
class _Hang:
    seconds: float
    then: _Reply | None


class FakeAnthropic:
    """Started on construction; `close()` (or leaving the `with` block) stops it promptly."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, min_cache_tokens: int = 0) -> None:
        self.cache = PromptCache(clock, min_cache_tokens)
        self._lock = threading.Lock()
        self._script: deque[_Reply | _Fault | _Hang] = deque()
        self._responder: Responder | None = None
        self._outage: _Fault | None = None
        self._model_outages: dict[str, _Fault] = {}
        self._requests: list[RecordedRequest] = []
        self._connections: set[socket.socket] = set()
        self._closing = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, name="FakeAnthropic", daemon=True
        )
        self._thread.start()
        host, port = self._server.server_address[:2]
        self.url = f"http://{host!s}:{port}"

    # -- lifetime -------------------------------------------------------------------------

    def __enter__(self) -> FakeAnthropic:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._closing.is_set():
            return
        self._closing.set()  # wakes hanging handlers
        self._server.shutdown()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:  # wakes handlers blocked reading an idle connection
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._server.server_close()  # joins the handler threads
        self._thread.join()

    @property
    def env(self) -> dict[str, str]:
        """Environment for code that builds its own client (the SDK reads both)."""
        return {"ANTHROPIC_API_KEY": "test-key", "ANTHROPIC_BASE_URL": self.url}

    # -- scripting ------------------------------------------------------------------------

    def reply(self, spec: Mapping[str, Any]) -> None:
        """Queue one reply: a partial Messages API response with at least `content`.

        Filled in when absent: `id`, `model` (the requested one), `stop_reason` (`tool_use` if
        any block is a tool_use, else `end_turn`), tool_use ids, and `usage` token counts
        (a rough len(json)/4)."""
        self._push(_Reply(_check_spec(spec)))

    def reply_text(
        self,
        text: str,
        *,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        stop_reason: str = "end_turn",
    ) -> None:
        self.reply_blocks(
            [text_block(text)], stop_reason=stop_reason, input_tokens=input_tokens, output_tokens=output_tokens
        )

    def reply_tool_use(
        self,
        name: str,
        input: Mapping[str, Any],
        *,
        id: str | None = None,
        text: str | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
    ) -> str:
        """Queue a reply calling one tool (after an optional text block); returns the tool_use id."""
        block = tool_use_block(name, input, id=id)
        blocks = [text_block(text), block] if text is not None else [block]
        self.reply_blocks(blocks, input_tokens=input_tokens, output_tokens=output_tokens)
        return cast(str, block["id"])

    def reply_blocks(
        self,
        blocks: Sequence[Mapping[str, Any]],
        *,
        stop_reason: str | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
    ) -> list[str]:
        """Queue a reply with these content blocks; returns the tool_use ids, in order."""
        content = [_with_tool_id(block) for block in blocks]
        spec: JSON = {"content": content}
        if stop_reason is not None:
            spec["stop_reason"] = stop_reason
        usage = {k: v for k, v in (("input_tokens", input_tokens), ("output_tokens", output_tokens)) if v is not None}
        if usage:
            spec["usage"] = usage
        self.reply(spec)
        return [block["id"] for block in content if block.get("type") == "tool_use"]

    def respond_with(self, responder: Responder | None) -> None:
        """Answer with `responder(request_json)` (a reply spec, as for `reply`) whenever no
        scripted entry is left. Queued entries still go first. `None` removes it."""
        with self._lock:
            self._responder = responder

    def fail(
        self,
        status: int = 500,
        *,
        retry_after: float | None = None,
        message: str | None = None,
        error_type: str | None = None,
        times: int = 1,
    ) -> None:
        """Queue `times` error answers. `retry_after` (seconds, may be fractional) sets the
        `retry-after` header, which the SDK obeys when it is > 0; without it the SDK backs off
        about 0.5 s, 1 s, ... on its own, so fast tests pass a small value."""
        fault = _fault(status, retry_after=retry_after, message=message, error_type=error_type)
        for _ in range(times):
            self._push(fault)

    def hang(self, seconds: float, *, then: Mapping[str, Any] | None = None) -> None:
        """Queue a request that is held `seconds` (cut short by `close()`), then answered with
        the reply spec `then`, or with 504 `timeout_error` when there is none."""
        self._push(_Hang(seconds, _Reply(_check_spec(then)) if then is not None else None))

    def unavailable(
        self,
        status: int = 529,
        *,
        retry_after: float | None = None,
        message: str | None = None,
        model: str | None = None,
    ) -> None:
        """Answer every request (only those for `model`, when given) with this error until
        `restore()`; scripted entries wait."""
        fault = _fault(status, retry_after=retry_after, message=message, error_type=None)
        with self._lock:
            if model is None:
                self._outage = fault
            else:
                self._model_outages[model] = fault

    def restore(self, model: str | None = None) -> None:
        """End the outage of `model`, or (None) every outage."""
        with self._lock:
            if model is None:
                self._outage = None
                self._model_outages.clear()
            else:
                self._model_outages.pop(model, None)

    @property
    def pending(self) -> int:
        """Scripted entries not used yet."""
        with self._lock:
            return len(self._script)

    # -- recording ------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received, in order (including rejected ones)."""
        with self._lock:
            return list(self._requests)

    @property
    def last_request(self) -> RecordedRequest:
        with self._lock:
            if not self._requests:
                raise AssertionError("FakeAnthropic received no request")
            return self._requests[-1]

    # -- serving (handler threads) --------------------------------------------------------

    def _push(self, entry: _Reply | _Fault | _Hang) -> None:
        with self._lock:
            self._script.append(entry)

    def _record(self, request: RecordedRequest) -> int:
        with self._lock:
            self._requests.append(request)
            return len(self._requests)

    def _track(self, conn: socket.socket, *, active: bool) -> None:
        with self._lock:
            (self._connections.add if active else self._connections.discard)(conn)

    def _answer(self, request: RecordedRequest, number: int) -> tuple[int, JSON, dict[str, str]]:
        if request.method != "POST" or request.path != "/v1/messages":
            return _error(404, f"FakeAnthropic: no route for {request.method} {request.path}")
        if not request.api_key:
            return _error(401, "x-api-key header is required")
        with self._lock:
            outage = self._outage or self._model_outages.get(str(request.body.get("model")))
        if outage is not None:
            return _fault_answer(outage)
        problem = _invalid(request)
        if problem is not None:
            return _error(400, problem)
        with self._lock:
            entry = self._script.popleft() if self._script else None
            responder = self._responder
        if isinstance(entry, _Fault):
            return _fault_answer(entry)
        if isinstance(entry, _Hang):
            if self._closing.wait(entry.seconds):
                raise _Closing
            if entry.then is None:
                return _error(504, f"FakeAnthropic: held the request {entry.seconds}s (hang) and gave no reply")
            entry = entry.then
        if isinstance(entry, _Reply):
            return 200, _message(entry.spec, request.body, self.cache.account(request.body)), {}
        if responder is not None:
            spec = _check_spec(responder(request.body))
            return 200, _message(spec, request.body, self.cache.account(request.body)), {}
        last = request.messages[-1].get("content") if request.messages else None
        return _error(
            500,
            f"FakeAnthropic: no scripted reply left (request #{number}; last message: {json.dumps(last)[:200]})",
            headers={"x-should-retry": "false"},
        )


class _Closing(Exception):
    """The fake is closing while a request hangs: drop the connection without answering."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeAnthropic


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 30  # an idle connection cannot keep a handler thread forever

    def setup(self) -> None:
        super().setup()
        self.server.fake._track(self.connection, active=True)

    def finish(self) -> None:
        self.server.fake._track(self.connection, active=False)
        with contextlib.suppress(OSError):  # the client went away (e.g. it timed out during a hang)
            super().finish()

    def do_POST(self) -> None:
        self._serve()

    def do_GET(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output quiet

    def _serve(self) -> None:
        fake = self.server.fake
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        request = RecordedRequest(
            method=self.command,
            path=self.path.split("?", 1)[0],
            headers={name.lower(): value for name, value in self.headers.items()},
            body=body if isinstance(body, dict) else {},
            received_at=time.monotonic(),
        )
        number = fake._record(request)
        try:
            if not isinstance(body, dict):
                status, payload, headers = _error(400, "The request body is not valid JSON (an object is expected)")
            else:
                status, payload, headers = fake._answer(request, number)
        except _Closing:
            self.close_connection = True
            return
        except Exception:
            detail = traceback.format_exc(limit=3)
            status, payload, headers = _error(
                500, f"FakeAnthropic internal error: {detail}", {"x-should-retry": "false"}
            )
        self._send(status, payload, headers)

    def _send(self, status: int, payload: JSON, headers: Mapping[str, str]) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.send_header("request-id", payload.get("request_id") or _new_id("req_"))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            self.close_connection = True  # the client is gone; nobody to tell


# -- the wire format ----------------------------------------------------------------------


def _new_id(prefix: str) -> str:
    return f"{prefix}01{uuid.uuid4().hex[:22]}"


def _with_tool_id(block: Mapping[str, Any]) -> JSON:
    out = dict(block)
    if out.get("type") == "tool_use" and not out.get("id"):
        out["id"] = _new_id("toolu_")
    return out


def _check_spec(spec: Mapping[str, Any]) -> JSON:
    content = spec.get("content")
    if not isinstance(content, list) or not all(isinstance(b, Mapping) and "type" in b for b in content):
        raise ValueError(f"reply spec needs `content`, a list of blocks with a `type`: {spec!r}")
    for block in content:
        if block["type"] == "text" and not isinstance(block.get("text"), str):
            raise ValueError(f"text block needs a string `text`: {block!r}")
        if block["type"] == "tool_use" and not (
            isinstance(block.get("name"), str) and isinstance(block.get("input"), Mapping)
        ):
            raise ValueError(f"tool_use block needs `name` and a dict `input`: {block!r}")
    stop_reason = spec.get("stop_reason")
    if stop_reason is not None and stop_reason not in STOP_REASONS:
        raise ValueError(f"unknown stop_reason {stop_reason!r}; expected one of {sorted(STOP_REASONS)}")
    return {**spec, "content": [_with_tool_id(block) for block in content]}


def _message(spec: JSON, request: JSON, cached: JSON) -> JSON:
    content: list[JSON] = spec["content"]
    has_tool_use = any(block["type"] == "tool_use" for block in content)
    usage = {**cached, "output_tokens": max(1, len(json.dumps(content)) // 4), **(spec.get("usage") or {})}
    return {
        "id": spec.get("id") or _new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": spec.get("model") or request.get("model"),
        "content": content,
        "stop_reason": spec.get("stop_reason") or ("tool_use" if has_tool_use else "end_turn"),
        "stop_sequence": spec.get("stop_sequence"),
        "usage": usage,
    }


def _fault(status: int, *, retry_after: float | None, message: str | None, error_type: str | None) -> _Fault:
    kind = error_type or ERROR_TYPES.get(status) or ("api_error" if status >= 500 else "invalid_request_error")
    return _Fault(status, kind, message or f"FakeAnthropic: scripted {status} {kind}", retry_after)


def _fault_answer(fault: _Fault) -> tuple[int, JSON, dict[str, str]]:
    headers = {}
    if fault.retry_after is not None:
        headers["retry-after"] = f"{fault.retry_after:g}"
    return _error(fault.status, fault.message, headers, error_type=fault.error_type)


def _error(
    status: int, message: str, headers: Mapping[str, str] | None = None, *, error_type: str | None = None
) -> tuple[int, JSON, dict[str, str]]:
    kind = error_type or ERROR_TYPES.get(status, "api_error")
    body = {"type": "error", "error": {"type": kind, "message": message}, "request_id": _new_id("req_")}
    return status, body, dict(headers or {})


def _invalid(request: RecordedRequest) -> str | None:
    """The first reason the real API would give a 400 for this request, or None."""
    body = request.body
    if not request.headers.get("anthropic-version"):
        return "anthropic-version: header is required"
    if body.get("stream"):
        return "FakeAnthropic does not support streaming; call messages.create without stream=True"
    for key in ("model", "max_tokens", "messages"):
        if key not in body:
            return f"{key}: Field required"
    if not isinstance(body["model"], str) or not body["model"]:
        return "model: Input should be a valid string"
    max_tokens = body["max_tokens"]
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        return "max_tokens: Input should be an integer greater than or equal to 1"
    tools = body.get("tools")
    if tools is not None and (
        not isinstance(tools, list) or not all(isinstance(t, dict) and isinstance(t.get("name"), str) for t in tools)
    ):
        return "tools: each tool needs a `name`"
    system = body.get("system")
    if (
        system is not None
        and not isinstance(system, str)
        and not (isinstance(system, list) and all(isinstance(b, dict) and b.get("type") == "text" for b in system))
    ):
        return "system: Input should be a string or a list of text blocks"
    return _invalid_messages(body["messages"]) or _invalid_cache_control(body)


def _invalid_messages(messages: Any) -> str | None:
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            return f'messages.{i}.role: Input should be "user" or "assistant"'
        content = message.get("content")
        if not isinstance(content, str | list) or (
            isinstance(content, list) and not all(isinstance(b, dict) and "type" in b for b in content)
        ):
            return f"messages.{i}.content: Input should be a string or a list of content blocks"
        if not content and not (i == len(messages) - 1 and message["role"] == "assistant"):
            return (
                f"messages.{i}: all messages must have non-empty content "
                "except for the optional final assistant message"
            )
    if messages[0]["role"] != "user":
        return 'messages: first message must use the "user" role'
    for i in range(1, len(messages)):
        if messages[i]["role"] == messages[i - 1]["role"]:
            role = messages[i]["role"]
            return (
                'messages: roles must alternate between "user" and "assistant", '
                f'but found multiple "{role}" roles in a row'
            )
    for i in range(len(messages)):
        problem = _invalid_tool_pairing(messages, i)
        if problem is not None:
            return problem
    return None


def _blocks(message: JSON, kind: str) -> Iterator[tuple[int, JSON]]:
    content = message["content"]
    if isinstance(content, list):
        yield from ((k, block) for k, block in enumerate(content) if block.get("type") == kind)


def _invalid_tool_pairing(messages: list[JSON], i: int) -> str | None:
    message = messages[i]
    if message["role"] == "assistant":
        for k, block in _blocks(message, "tool_use"):
            if not (isinstance(block.get("id"), str) and isinstance(block.get("name"), str)):
                return f"messages.{i}.content.{k}.tool_use: `id` and `name` are required"
            if not isinstance(block.get("input"), dict):
                return f"messages.{i}.content.{k}.tool_use.input: Input should be a valid dictionary"
        used = [block["id"] for _, block in _blocks(message, "tool_use")]
        following = messages[i + 1] if i + 1 < len(messages) else None
        answered = {block.get("tool_use_id") for _, block in _blocks(following, "tool_result")} if following else set()
        missing = [tool_id for tool_id in used if tool_id not in answered]
        if missing:
            return (
                f"messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: "
                f"{', '.join(missing)}. Each `tool_use` block must have a corresponding `tool_result` block "
                "in the next message."
            )
        return None
    previous = messages[i - 1] if i > 0 else None
    offered = {block["id"] for _, block in _blocks(previous, "tool_use")} if previous else set()
    results = list(_blocks(message, "tool_result"))
    for k, block in results:
        if block.get("tool_use_id") not in offered:
            return (
                f"messages.{i}.content.{k}: unexpected `tool_use_id` found in `tool_result` blocks: "
                f"{block.get('tool_use_id')}. Each `tool_result` block must have a corresponding `tool_use` block "
                "in the previous message."
            )
    if results and [k for k, _ in results] != list(range(len(results))):
        return f"messages.{i}: `tool_result` blocks must come first in the content array, before any other content"
    return None


# -- prompt caching -----------------------------------------------------------------------

MAX_BREAKPOINTS = 4
LOOKBACK_BLOCKS = 20
TTLS = {None: 300.0, "5m": 300.0, "1h": 3600.0}


@dataclass(frozen=True)
class PromptBlock:
    """One block of a request's prompt, in cache order, as the cache sees it."""

    key: bytes  # the block without its `cache_control` (a mark does not change the prefix)
    tokens: int
    ttl: str | None  # for a marked block, its `cache_control.ttl` (None: 5 minutes)
    marked: bool


def prompt_blocks(body: JSON) -> list[PromptBlock]:
    """The prompt of a (valid) request as blocks, in the order the API caches it: each tool
    definition, the system prompt's blocks, then each message's blocks (a string content is one
    text block), each with its role."""
    parts: list[tuple[str, Any]] = [("tool", tool) for tool in body.get("tools") or []]
    system = body.get("system")
    parts += [("system", block) for block in _as_blocks(system)] if system else []
    for message in body.get("messages") or []:
        parts += [(message["role"], block) for block in _as_blocks(message["content"])]
    blocks = []
    for role, block in parts:
        mark = block.get("cache_control") if isinstance(block, dict) else None
        bare = {k: v for k, v in block.items() if k != "cache_control"} if isinstance(block, dict) else block
        key = json.dumps([role, bare]).encode()
        ttl = mark.get("ttl") if isinstance(mark, dict) else None
        blocks.append(PromptBlock(key, max(1, len(key) // 4), ttl, mark is not None))
    return blocks


def _as_blocks(content: Any) -> list[Any]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content)


class PromptCache:
    """Prefixes stored by marked blocks, per model, each alive until `clock()` passes its expiry."""

    def __init__(self, clock: Callable[[], float], min_tokens: int) -> None:
        self.clock, self.min_tokens = clock, min_tokens
        self._lock = threading.Lock()
        self._expiry: dict[tuple[str, str], tuple[float, float]] = {}  # (model, prefix hash) → (expires, ttl)

    def account(self, body: JSON) -> JSON:
        """Read and write the cache for one request; the `usage` input counts it gets."""
        blocks = prompt_blocks(body)
        model = str(body.get("model"))
        hashes, digest = [], hashlib.sha256()
        for block in blocks:
            digest.update(hashlib.sha256(block.key).digest())
            hashes.append(digest.hexdigest())
        ends = [i + 1 for i, block in enumerate(blocks) if block.marked]  # prefix lengths at the marks
        tokens = [0]
        for block in blocks:
            tokens.append(tokens[-1] + block.tokens)
        now = self.clock()
        with self._lock:
            read = 0
            for end in ends:
                for length in range(end, max(0, end - LOOKBACK_BLOCKS) - 1, -1):
                    found = self._expiry.get((model, hashes[length - 1])) if length else None
                    if found is not None and found[0] > now:
                        self._expiry[(model, hashes[length - 1])] = (now + found[1], found[1])
                        read = max(read, length)
                        break
            written = read
            for end in ends:
                if end > read and tokens[end] >= self.min_tokens:
                    ttl = TTLS[blocks[end - 1].ttl]
                    self._expiry[(model, hashes[end - 1])] = (now + ttl, ttl)
                    written = max(written, end)
        write_1h = sum(b.tokens for b in blocks[read:written] if b.ttl == "1h")
        return {
            "input_tokens": tokens[-1] - tokens[written],
            "cache_read_input_tokens": tokens[read],
            "cache_creation_input_tokens": tokens[written] - tokens[read],
            "cache_creation": {
                "ephemeral_5m_input_tokens": tokens[written] - tokens[read] - write_1h,
                "ephemeral_1h_input_tokens": write_1h,
            },
        }


def _invalid_cache_control(body: JSON) -> str | None:
    marks = []
    parts: list[Any] = list(body.get("tools") or [])
    if isinstance(body.get("system"), list):
        parts += body["system"]
    for message in body["messages"]:
        if isinstance(message["content"], list):
            parts += message["content"]
    for part in parts:
        if "cache_control" in part:
            marks.append(part["cache_control"])
    for mark in marks:
        if not isinstance(mark, dict) or mark.get("type") != "ephemeral" or mark.get("ttl") not in TTLS:
            return f"cache_control: Input tag {json.dumps(mark)} does not match the expected tag 'ephemeral'"
    if len(marks) > MAX_BREAKPOINTS:
        return f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. Found {len(marks)}."
    return None
