"""Tools that run with a person's own credential (`credentials: requester | approver`), for the
delegation tests. Each records the token it was given (`GIVEN`, by idempotency key)."""

from __future__ import annotations

import threading

from agent import tool
from agent.tools import Secrets

GIVEN: dict[str, dict[str, str]] = {}
_LOCK = threading.Lock()


@tool(idempotent=True, risk="medium", secrets=["github_token"])
def open_pr(repo: str, title: str, echo: bool = False, *, idempotency_key: str, secrets: Secrets) -> dict[str, object]:
    """Open a pull request as the person; `echo` returns the token (it must come back scrubbed)."""
    with _LOCK:
        GIVEN[idempotency_key] = dict(secrets)
    token = secrets["github_token"]
    return {"repo": repo, "title": title, "number": 42, **({"authorization": f"token {token}"} if echo else {})}


@tool(idempotent=True)
def list_prs(repo: str) -> list[str]:
    """Read-only, no credential: runs whoever asks."""
    return [f"{repo}#41"]
