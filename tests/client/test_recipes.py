"""The recipes in examples/recipes run end to end against the served app: each framework's own
fake model drafts a `restart_service` call, a person decides in Slack (signed requests), and the
tool runs once with what they approved, or the model reads their reason. The README shows each
recipe exactly as it is here."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from agents import Model, ModelResponse, RunConfig, Runner, RunResult, Usage
from countersign_client import AsyncCountersign, Countersign
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from openai.types.responses import ResponseFunctionToolCall, ResponseOutputMessage, ResponseOutputText
from pydantic import Field

from examples.recipes.langgraph_agent import build_graph
from examples.recipes.openai_agents_sdk import build_agent
from tests.bot.slack_app import ALICE, BOB, SlackApp
from tests.client.served import (
    AsyncRecording,
    Calls,
    Recording,
    api_serving,
    approve_with_edits,
    new_client,
    reject,
)

ROOT = Path(__file__).resolve().parents[2]
DRAFTED = {"service": "api", "region": "eu"}
WAIT_S = 20  # a test that fails ends (the agent hears "not approved"), it does not wait an hour


@pytest.fixture
def api_app(db_url: str) -> Iterator[SlackApp]:
    with api_serving(db_url) as app:
        yield app


@pytest.fixture
def token(api_app: SlackApp) -> str:
    return new_client(api_app, "ops-agent", ["ops"])["token"]


# -- LangGraph ------------------------------------------------------------------------------


class ToolCallingFakeModel(GenericFakeChatModel):
    """LangChain's own fake chat model (its replies from a list), with the `bind_tools` a real
    model has (the replies are scripted, so the tools change nothing: it notes their names) and
    the messages it was given on each turn."""

    seen: list[list[BaseMessage]] = Field(default_factory=list)
    bound: list[str] = Field(default_factory=list)

    def bind_tools(self, tools: Any, **kwargs: Any) -> ToolCallingFakeModel:
        self.bound.extend(t.name for t in tools)
        return self

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> Any:
        self.seen.append(list(messages))
        return super()._generate(messages, *args, **kwargs)


def _start_graph(pool: ThreadPoolExecutor, app: SlackApp, token: str, calls: Calls) -> tuple[Any, Future[Any]]:
    model = ToolCallingFakeModel(
        messages=iter(
            [
                AIMessage("", tool_calls=[{"name": "restart_service", "args": DRAFTED, "id": "call_1"}]),
                AIMessage("Done."),
            ]
        )
    )

    def run() -> Any:
        with Countersign(app.url, token, transport=Recording(calls)) as client:
            graph = build_graph(client, model, wait_s=WAIT_S)
            return graph.invoke({"messages": [HumanMessage("Restart the api service")]})

    return model, pool.submit(run)


def test_langgraph_a_tool_node_runs_the_tool_once_with_the_approved_edit(api_app: SlackApp, token: str) -> None:
    calls = Calls()
    with ThreadPoolExecutor(1) as pool:
        model, running = _start_graph(pool, api_app, token, calls)
        action_id = calls.asked()
        approve_with_edits(api_app, action_id, ALICE, {"region": "us"})
        state = running.result(timeout=30)
    [tool_message] = [m for m in state["messages"] if isinstance(m, ToolMessage)]
    assert (tool_message.content, tool_message.tool_call_id) == ("restarted api in us", "call_1")
    assert tool_message.status == "success"
    assert model.bound == ["restart_service"]
    assert model.seen[1][-1] == tool_message  # the model's next turn read the tool's result
    assert state["messages"][-1].content == "Done."
    _assert_ran_once_as_approved(api_app, calls, action_id, "restarted api in us")


def test_langgraph_a_rejection_reaches_the_model_with_the_reason_and_nothing_runs(
    api_app: SlackApp, token: str
) -> None:
    calls = Calls()
    with ThreadPoolExecutor(1) as pool:
        model, running = _start_graph(pool, api_app, token, calls)
        action_id = calls.asked()
        reject(api_app, action_id, BOB, "Not during the sale.")
        state = running.result(timeout=30)
    [tool_message] = [m for m in state["messages"] if isinstance(m, ToolMessage)]
    assert tool_message.content == "Not run, not approved: Not during the sale."
    assert tool_message.status == "error"
    assert model.seen[1][-1] == tool_message
    _assert_not_run(api_app, calls, action_id)


# -- OpenAI Agents SDK ----------------------------------------------------------------------


class ScriptedModel(Model):
    """An Agents SDK `Model` that answers each turn with the next scripted output and keeps the
    input it was given (the SDK's own tests' FakeModel, cut to what these tests use)."""

    def __init__(self, turns: list[list[Any]]) -> None:
        self.turns = turns
        self.inputs: list[Any] = []  # str | list[TResponseInputItem]
        self.tools: list[list[str]] = []

    async def get_response(self, *args: Any, input: Any, **kwargs: Any) -> ModelResponse:  # the SDK names each
        self.inputs.append(input)
        self.tools.append([tool.name for tool in kwargs["tools"]])
        return ModelResponse(output=self.turns.pop(0), usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        raise NotImplementedError("the recipe's agent is run without streaming here")


def _start_agent(pool: ThreadPoolExecutor, app: SlackApp, token: str, calls: Calls) -> tuple[Any, Future[RunResult]]:
    drafted = ResponseFunctionToolCall(
        id="fc_1", call_id="call_1", type="function_call", name="restart_service", arguments=json.dumps(DRAFTED)
    )
    text = ResponseOutputText(type="output_text", text="Done.", annotations=[], logprobs=[])
    answer = ResponseOutputMessage(id="msg_1", type="message", role="assistant", status="completed", content=[text])
    model = ScriptedModel([[drafted], [answer]])

    async def run() -> RunResult:
        async with AsyncCountersign(app.url, token, transport=AsyncRecording(calls)) as client:
            agent = build_agent(client, model, wait_s=WAIT_S)
            return await Runner.run(agent, "Restart the api service", run_config=RunConfig(tracing_disabled=True))

    return model, pool.submit(asyncio.run, run())


def _tool_output(model: ScriptedModel) -> Any:
    """The tool's output as the model read it on its second turn."""
    assert isinstance(model.inputs[1], list)
    [output] = [item for item in model.inputs[1] if item.get("type") == "function_call_output"]
    assert output["call_id"] == "call_1"
    return output["output"]


def test_openai_agents_a_function_tool_runs_once_with_the_approved_edit(api_app: SlackApp, token: str) -> None:
    calls = Calls()
    with ThreadPoolExecutor(1) as pool:
        model, running = _start_agent(pool, api_app, token, calls)
        action_id = calls.asked()
        approve_with_edits(api_app, action_id, ALICE, {"region": "us"})
        result = running.result(timeout=30)
    assert model.tools == [["restart_service"], ["restart_service"]]
    assert _tool_output(model) == "restarted api in us"
    assert result.final_output == "Done."
    _assert_ran_once_as_approved(api_app, calls, action_id, "restarted api in us")


def test_openai_agents_a_rejection_reaches_the_model_with_the_reason_and_nothing_runs(
    api_app: SlackApp, token: str
) -> None:
    calls = Calls()
    with ThreadPoolExecutor(1) as pool:
        model, running = _start_agent(pool, api_app, token, calls)
        action_id = calls.asked()
        reject(api_app, action_id, BOB, "Not during the sale.")
        result = running.result(timeout=30)
    assert _tool_output(model) == "Not run, not approved: Not during the sale."
    assert result.final_output == "Done."
    _assert_not_run(api_app, calls, action_id)


# -- both -----------------------------------------------------------------------------------


def _action(app: SlackApp, action_id: str) -> Any:
    app.settle()
    [action] = [a for a in app.actions() if a.public_id == action_id]
    return action


def _assert_ran_once_as_approved(app: SlackApp, calls: Calls, action_id: str, output: str) -> None:
    paths = [path.rsplit("/", 1)[-1] for path in calls.paths()]
    assert paths[0] == "actions 201"
    assert (paths.count("claim 200"), paths.count("result 200")) == (1, 1)  # one claim: it ran once
    assert paths.index("claim 200") < paths.index("result 200") == len(paths) - 1
    action = _action(app, action_id)
    assert (action.tool, action.state, action.decided_by) == ("restart_service", "succeeded", ALICE)
    assert action.params == {"service": "api", "region": "us"}  # the approver's edit, not the drafted "eu"
    assert action.result == {"value": output}


def _assert_not_run(app: SlackApp, calls: Calls, action_id: str) -> None:
    assert not any(path.endswith(("/claim", "/result")) for path in (c.path for c in calls.seen))
    action = _action(app, action_id)
    assert (action.state, action.decided_by, action.params, action.result) == ("rejected", BOB, DRAFTED, None)


# -- the README shows the recipes as they are -----------------------------------------------


@pytest.mark.parametrize("recipe", ["langgraph_agent.py", "openai_agents_sdk.py"])
def test_the_readme_shows_each_recipe_whole(recipe: str) -> None:
    source = (ROOT / "examples" / "recipes" / recipe).read_text()
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"^```python\n(.*?)^```$", readme, flags=re.MULTILINE | re.DOTALL)
    assert source in blocks, f"README.md has no ```python block equal to examples/recipes/{recipe}"
