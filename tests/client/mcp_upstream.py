"""The upstream MCP server of the gate's tests, on stdio: `MCPServer` (the mcp SDK's FastMCP,
renamed in mcp 2) with a write tool and a read tool. Every call it receives is appended as one
JSON line to the file named by its first argument, so a test counts what reached it.

    python -m tests.client.mcp_upstream CALLS_FILE [PARENT_FILE]

With PARENT_FILE it writes there, at start, the id of the process that started it (the gate).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from mcp.server.mcpserver import MCPServer

server = MCPServer("notes")


def _record(tool: str, arguments: dict[str, Any]) -> None:
    with open(sys.argv[1], "a", encoding="utf-8") as calls:
        calls.write(json.dumps({"tool": tool, "arguments": arguments}) + "\n")


@server.tool()
def write_note(title: str, body: str) -> dict[str, Any]:
    """Write a note (it changes something: the gate asks a person first)."""
    _record("write_note", {"title": title, "body": body})
    return {"written": title, "chars": len(body)}


@server.tool()
def read_note(title: str) -> str:
    """Read a note (read-only in the gate's task type: approved at once, recorded)."""
    _record("read_note", {"title": title})
    return f"{title}: nothing new"


if __name__ == "__main__":
    if len(sys.argv) > 2:
        with open(sys.argv[2], "w", encoding="utf-8") as parent:
            parent.write(str(os.getppid()))
    server.run()
