"""`require_approval`: a function that asks first and runs only with a person's approval, with
the parameters they approved.

Each call: the call's arguments become the action's params (defaults included; `**kwargs`
merged in by name) → request → wait → on approval claim → call the function with the APPROVED
params (a person's edits applied) → report `succeeded` (its return value as the result: see
`jsonable`) or
`failed` (the exception's type and text, then the exception is raised again). A rejection or
veto raises `Rejected(reason)`, an expiry `Expired`, any other end `NotApproved`; with a
`timeout`, a wait that outlasts it raises `WaitTimedOut` (the action stays asked for).

An interruption that is not an `Exception` (KeyboardInterrupt, a cancelled task) is not
reported: the claim's lease runs out and the action goes to `unknown`, which a person resolves,
because nobody can say whether the function took effect.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar, overload

from countersign_client.action import Action, outcome
from countersign_client.async_client import AsyncCountersign
from countersign_client.client import Countersign
from countersign_client.errors import CountersignError

P = ParamSpec("P")
R = TypeVar("R")


class ReportFailed(CountersignError):
    """The function ran, but its outcome could not be reported (the action stays `executing`
    until its lease runs out, then `unknown`): `result` is what it returned."""

    def __init__(self, action: Action, result: object, error: Exception) -> None:
        self.action, self.result = action, result
        super().__init__(f"{action.action_id} ran, but reporting its result failed: {error}")


@dataclass(frozen=True)
class _Ask:
    task_type: str
    tool: str
    timeout: float | None
    rationale: str | None
    confidence: float | None
    requester: str | None
    callback_url: str | None

    def request_args(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "task_type": self.task_type,
            "tool": self.tool,
            "params": params,
            "rationale": self.rationale,
            "confidence": self.confidence,
            "requester": self.requester,
            "callback_url": self.callback_url,
        }


@overload
def require_approval(
    client: Countersign,
    *,
    task_type: str,
    tool: str,
    timeout: float | None = None,
    rationale: str | None = None,
    confidence: float | None = None,
    requester: str | None = None,
    callback_url: str | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


@overload
def require_approval(
    client: AsyncCountersign,
    *,
    task_type: str,
    tool: str,
    timeout: float | None = None,
    rationale: str | None = None,
    confidence: float | None = None,
    requester: str | None = None,
    callback_url: str | None = None,
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]: ...


def require_approval(
    client: Countersign | AsyncCountersign,
    *,
    task_type: str,
    tool: str,
    timeout: float | None = None,
    rationale: str | None = None,
    confidence: float | None = None,
    requester: str | None = None,
    callback_url: str | None = None,
) -> Callable[[Callable[P, Any]], Callable[P, Any]]:
    """Wrap a function (with a `Countersign`) or a coroutine function (with an
    `AsyncCountersign`) so that each call runs only once `task_type`'s people approve `tool`
    with the call's arguments. `timeout`: seconds to wait for a decision (`None`: until the
    server decides or its escalation chain expires the action)."""
    ask = _Ask(task_type, tool, timeout, rationale, confidence, requester, callback_url)

    def wrap(function: Callable[P, Any]) -> Callable[P, Any]:
        signature = inspect.signature(function)
        if inspect.iscoroutinefunction(function):
            if not isinstance(client, AsyncCountersign):
                raise TypeError(f"{function.__qualname__} is async: require_approval needs an AsyncCountersign")
            async_client = client

            @functools.wraps(function)
            async def ask_then_run_async(*args: P.args, **kwargs: P.kwargs) -> Any:
                params = call_params(signature, args, kwargs)
                action = await async_client.request(**ask.request_args(params))
                runnable = outcome(await async_client.wait(action, ask.timeout))
                call = approved_call(signature, runnable.params if runnable.params is not None else params)
                claimed = await async_client.claim(runnable)
                try:
                    result = await function(*call.args, **call.kwargs)
                except Exception as exc:
                    try:
                        await async_client.report(claimed, "failed", error=failure_text(exc))
                    except CountersignError as report_error:
                        exc.add_note(unreported(claimed, report_error))
                    raise
                try:
                    await async_client.report(claimed, "succeeded", result=jsonable(result))
                except CountersignError as report_error:
                    raise ReportFailed(claimed, result, report_error) from report_error
                return result

            return ask_then_run_async

        if not isinstance(client, Countersign):
            raise TypeError(f"{function.__qualname__} is not async: require_approval needs a Countersign")
        sync_client = client

        @functools.wraps(function)
        def ask_then_run(*args: P.args, **kwargs: P.kwargs) -> Any:
            params = call_params(signature, args, kwargs)
            action = sync_client.request(**ask.request_args(params))
            runnable = outcome(sync_client.wait(action, ask.timeout))
            call = approved_call(signature, runnable.params if runnable.params is not None else params)
            claimed = sync_client.claim(runnable)
            try:
                result = function(*call.args, **call.kwargs)
            except Exception as exc:
                try:
                    sync_client.report(claimed, "failed", error=failure_text(exc))
                except CountersignError as report_error:
                    exc.add_note(unreported(claimed, report_error))
                raise
            try:
                sync_client.report(claimed, "succeeded", result=jsonable(result))
            except CountersignError as report_error:
                raise ReportFailed(claimed, result, report_error) from report_error
            return result

        return ask_then_run

    return wrap


def call_params(signature: inspect.Signature, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """A call's arguments by parameter name, defaults included; `**kwargs` merged in by name,
    `*args` as a list under its name."""
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    params: dict[str, Any] = {}
    for name, value in bound.arguments.items():
        kind = signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            params.update(value)
        elif kind is inspect.Parameter.VAR_POSITIONAL:
            params[name] = list(value)
        else:
            params[name] = value
    return params


def approved_call(signature: inspect.Signature, params: Mapping[str, Any]) -> inspect.BoundArguments:
    """The call to make with the approved `params` (`call_params`' inverse); a
    `CountersignError`, before anything is claimed, when the function cannot take them."""
    kinds = {parameter.kind for parameter in signature.parameters.values()}
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    rest = dict(params)
    for name, parameter in signature.parameters.items():
        if parameter.kind is inspect.Parameter.VAR_KEYWORD or name not in rest:
            continue
        value = rest.pop(name)
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            args.extend(value if isinstance(value, list) else [value])
        elif parameter.kind is inspect.Parameter.POSITIONAL_ONLY or (
            parameter.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD and inspect.Parameter.VAR_POSITIONAL in kinds
        ):
            args.append(value)  # before a *args, only by position
        else:
            kwargs[name] = value
    if inspect.Parameter.VAR_KEYWORD in kinds:
        kwargs.update(rest)
    elif rest:
        raise CountersignError(f"the approved params do not fit the function: unexpected {sorted(rest)}")
    try:
        return signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise CountersignError(f"the approved params do not fit the function: {exc}") from exc


def unreported(action: Action, error: Exception) -> str:
    return f"countersign: reporting this failure of {action.action_id} failed: {error}"


def failure_text(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"[:2000]


def jsonable(result: object) -> dict[str, Any]:
    """The result as the server records it, a JSON object (as for a `@tool`'s return value): a
    dict as it is, anything else (a tool's text, a number, a list) as `{"value": …}`; its `repr`
    when JSON cannot carry it."""
    wrapped = result if isinstance(result, dict) else {"value": result}
    try:
        json.dumps(wrapped, allow_nan=False)
    except (TypeError, ValueError):
        return {"value": repr(result)}
    return wrapped
