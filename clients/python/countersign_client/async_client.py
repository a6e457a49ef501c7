"""`AsyncCountersign`: the asyncio client (one `httpx2.AsyncClient`), the same calls as
`Countersign`, awaited."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import httpx2

from countersign_client import protocol
from countersign_client.action import Action
from countersign_client.errors import CountersignError, Unreachable, WaitTimedOut
from countersign_client.protocol import ActionRef, Status, WaitPlan


class AsyncCountersign:
    """`Countersign` for asyncio: the same arguments and calls, awaited; close it with
    `await aclose()` or `async with`."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout_s: float = 30.0,
        transport: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self._http = httpx2.AsyncClient(
            base_url=self.url, headers=protocol.headers(token), timeout=timeout_s, transport=transport
        )

    async def __aenter__(self) -> AsyncCountersign:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request(
        self,
        task_type: str,
        tool: str,
        params: Mapping[str, Any],
        rationale: str | None = None,
        confidence: float | None = None,
        requester: str | None = None,
        external_id: str | None = None,
        callback_url: str | None = None,
        schema: Mapping[str, Any] | None = None,
    ) -> Action:
        """Ask for `tool` to run with `params` under `task_type`'s rules. The same
        `external_id` again answers the action it made the first time. `schema`: the JSON
        Schema of an open tool's params (a task type's `open_tools`), which checks them and
        any edit; a declared tool's schema is the server's."""
        body = protocol.request_body(
            task_type,
            tool,
            params,
            rationale=rationale,
            confidence=confidence,
            requester=requester,
            external_id=external_id,
            callback_url=callback_url,
            schema=schema,
        )
        return protocol.action_answer(await self._send("POST", "/api/actions", protocol.encode(body)))

    async def get(self, action: ActionRef, *, wait_s: int = 0) -> Action:
        """The action now; with `wait_s` (at most 60), as soon as it is decided or after
        `wait_s` seconds, whichever comes first."""
        path = protocol.action_path(action)
        if not wait_s:
            return protocol.action_answer(await self._send("GET", path))
        if not 0 < wait_s <= protocol.MAX_WAIT_S:
            raise ValueError(f"wait_s must be 1..{protocol.MAX_WAIT_S}, not {wait_s!r}")
        response = await self._send("GET", path, params={"wait": wait_s}, timeout_s=wait_s + protocol.WAIT_SLACK_S)
        return protocol.action_answer(response)

    async def wait(self, action: ActionRef, timeout: float | None = None) -> Action:
        """The action once it is decided (approved, rejected, vetoed, expired, ...), asking
        the server again every minute at most; after `timeout` seconds (`None`: no limit)
        `WaitTimedOut` carrying the last state seen. A long-poll that fails on the way (the
        server restarting) is asked again after a pause while the time allows."""
        current = action if isinstance(action, Action) else None
        plan = WaitPlan(timeout)
        while current is None or not current.decided:
            if current is not None and plan.over():
                raise WaitTimedOut(current)
            asked_s, began = plan.next_wait(), time.monotonic()
            try:
                current = await self.get(action, wait_s=asked_s)
            except CountersignError as exc:
                pause = plan.pause_after_failure() if protocol.retryable(exc) else None
                if pause is None:
                    raise
                await asyncio.sleep(pause)
            else:
                pause = 0.0 if current.decided else plan.answered(asked_s, time.monotonic() - began)
                if pause:
                    await asyncio.sleep(pause)
        return current

    async def claim(self, action: ActionRef) -> Action:
        """Take the approved action to run it (it moves to `executing`, with a lease). Only
        one claim ever succeeds: any other gets `Conflict`."""
        return protocol.action_answer(await self._send("POST", protocol.action_path(action, "/claim"), b"{}"))

    async def report(
        self, action: ActionRef, status: Status, result: object = None, error: str | None = None
    ) -> Action:
        """Say how the claimed action's run ended: `succeeded` (with its JSON `result`) or
        `failed` (with `error`)."""
        body = protocol.encode(protocol.result_body(status, result, error))
        return protocol.action_answer(await self._send("POST", protocol.action_path(action, "/result"), body))

    async def _send(
        self,
        method: str,
        path: str,
        content: bytes | None = None,
        *,
        params: Mapping[str, int] | None = None,
        timeout_s: float | None = None,
    ) -> httpx2.Response:
        try:
            return await self._http.request(
                method, path, content=content, params=params, timeout=timeout_s or self.timeout_s
            )
        except httpx2.TransportError as exc:
            raise Unreachable(f"{method} {self.url}{path}: {type(exc).__name__}: {exc}") from exc
