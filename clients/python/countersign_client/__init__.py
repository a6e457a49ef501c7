"""countersign's Python client: ask for a person's approval before your code acts.

    from countersign_client import Countersign, require_approval

    client = Countersign("https://countersign.example.com", token)

    @require_approval(client, task_type="ops", tool="restart_service")
    def restart_service(service: str) -> str: ...

It needs only `httpx2`; it imports nothing of the countersign server. Its commands
(`countersign-client mcp-gate`, `countersign-client hook claude-code`: `countersign_client.cli`)
gate MCP tools and Claude Code's; the gate needs the `mcp` extra.
"""

from countersign_client.action import Action
from countersign_client.async_client import AsyncCountersign
from countersign_client.client import Countersign
from countersign_client.decorator import ReportFailed, require_approval
from countersign_client.errors import (
    APIError,
    Conflict,
    CountersignError,
    Expired,
    Forbidden,
    Invalid,
    InvalidSignature,
    NotApproved,
    NotFound,
    Rejected,
    ServerError,
    Unauthorized,
    Unreachable,
    WaitTimedOut,
)
from countersign_client.webhooks import Delivery, verify_webhook

__all__ = [
    "APIError",
    "Action",
    "AsyncCountersign",
    "Conflict",
    "Countersign",
    "CountersignError",
    "Delivery",
    "Expired",
    "Forbidden",
    "Invalid",
    "InvalidSignature",
    "NotApproved",
    "NotFound",
    "Rejected",
    "ReportFailed",
    "ServerError",
    "Unauthorized",
    "Unreachable",
    "WaitTimedOut",
    "require_approval",
    "verify_webhook",
]
