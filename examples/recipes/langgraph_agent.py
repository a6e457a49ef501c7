"""A LangGraph agent whose tool node runs `restart_service` only once a person approves it in Slack.

The model drafts the call; countersign posts its card; the tool runs with the approved
parameters (a person's edits applied) and its result is recorded. Rejected, vetoed, expired or
not decided within `wait_s`: the tool does not run and the model reads why in the tool message.
"""

from countersign_client import Countersign, NotApproved, WaitTimedOut, require_approval
from langchain_core.language_models import BaseChatModel
from langchain_core.tools import tool
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import ToolNode, tools_condition


def not_run(error: NotApproved | WaitTimedOut) -> str:
    """The tool message the model reads instead of a result."""
    return f"Not run, not approved: {error}"


def build_graph(client: Countersign, model: BaseChatModel, wait_s: float = 3600) -> CompiledStateGraph[MessagesState]:
    @tool
    @require_approval(client, task_type="ops", tool="restart_service", timeout=wait_s)
    def restart_service(service: str, region: str = "eu") -> str:
        """Restart a production service in a region."""
        return f"restarted {service} in {region}"  # your code that acts, with the APPROVED params

    tools = [restart_service]
    drafter = model.bind_tools(tools)

    def agent(state: MessagesState) -> MessagesState:
        return {"messages": [drafter.invoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode(tools, handle_tool_errors=not_run))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition)
    graph.add_edge("tools", "agent")
    return graph.compile()
