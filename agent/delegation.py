"""Acting on behalf of a person: a task type with `credentials: requester | approver` runs its
tools with that person's own secrets (a token they connected) instead of the workspace's.

A person's credential is a vault secret with the tool's declared name and the person's Slack
user id as owner (`countersign secrets connect NAME --owner U…`). Whose it is: the task's
requester, or the approver whose approval made the action run (`decided_by`). `Delegation`
answers the gate (`approvals.ports.Credentials`: approval is refused until that person has
connected it), the card (who must connect what) and the executor (whose row to read).

Checks here look only at whether the rows exist, never at values: they need no vault key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from agent.tools import ToolRegistry
from agent.vault import ANY_TOOL, OAuthGrant, Vault, VaultError
from approvals.ports import MissingCredential
from core import outbox
from core.config import Config
from core.messages import CardUpdated
from core.models import Action, Secret
from core.states import OPEN_FOR_DECISION

__all__ = [
    "REQUESTER_SENT_LINK",
    "CredentialError",
    "CredentialNote",
    "Delegation",
    "NotConnected",
    "connect_command",
    "connect_credential",
    "refresh_requesters_cards",
]

Mode = Literal["requester", "approver"]


class CredentialError(VaultError):
    """A person's own credential could not be used; `owner` (if known) is told, and `details`
    (names and reasons, never values) go into the audit event of the failure."""

    def __init__(self, owner: str | None, message: str, details: dict[str, Any] | None = None) -> None:
        self.owner, self.details = owner, dict(details or {})
        super().__init__(message)


class NotConnected(CredentialError):
    def __init__(self, owner: str | None, names: list[str], tool: str) -> None:
        self.names, self.tool = names, tool
        listed = ", ".join(f"`{name}`" for name in names)
        if owner is None:
            message = f"tool {tool!r} runs with the requester's own {listed}, but this task has no requester"
        else:
            message = (
                f"{owner} has not connected {listed}, which tool {tool!r} runs with; it did not run. "
                f"Connect it: {connect_command(names, owner)}"
            )
        super().__init__(owner, message, {"credential": "not_connected", "secrets": names})


@dataclass(frozen=True)
class CredentialNote:
    """What a card says about whose credential its tool runs with."""

    mode: Mode
    names: tuple[str, ...]
    owner: str | None  # the requester (mode requester), or who approved (once decided)
    connected: bool | None  # None when nobody in particular is known yet (approver mode, undecided)
    how: str
    web: bool = False  # every name is connected through a provider's sign-in, from Slack


REQUESTER_SENT_LINK = "the requester has been sent a link to connect"
APPROVERS_CLICK = "approvers: click Approve to get your connect link"
CONNECT_BUTTON = "with the Connect button below"


def connect_command(names: list[str] | tuple[str, ...], owner: str | None) -> str:
    """The command that connects `names` for `owner`, to show to people."""
    who = owner or "YOUR_SLACK_ID"
    return " and ".join(f"`countersign secrets connect {name} --owner {who}`" for name in names)


class Delegation:
    """Whose credentials a task type's tools run with, and whether that person connected them."""

    def __init__(self, config: Config, registry: ToolRegistry) -> None:
        self.config, self.registry = config, registry

    def mode(self, task_type: str) -> Mode | None:
        settings = self.config.task_types.get(task_type)
        return settings.credentials if settings else None

    def names(self, task_type: str, tool: str) -> tuple[str, ...]:
        """The secrets `tool` takes from a person in `task_type`; () if it runs with the workspace's."""
        if self.mode(task_type) is None or tool not in self.registry:
            return ()
        return self.registry.get(tool).secrets

    def owner(self, action: Action, approver: str | None = None) -> str | None:
        """Whose credential `action` runs with: its requester, or `approver` (else who approved it)."""
        if self.mode(action.task_type) == "requester":
            return action.requester
        return approver or action.decided_by

    def web(self, names: list[str] | tuple[str, ...]) -> bool:
        """Whether people connect every one of `names` themselves, through a provider's sign-in."""
        return bool(names) and all(self.config.connect_provider(name) for name in names)

    def how(self, task_type: str, names: list[str] | tuple[str, ...], owner: str | None, approver: str | None) -> str:
        """How `owner` connects `names`: from Slack when a provider's sign-in does, else the CLI."""
        if not self.web(names):
            return connect_command(names, owner)
        if self.mode(task_type) == "requester":
            return REQUESTER_SENT_LINK
        return CONNECT_BUTTON if owner is not None and owner == approver else APPROVERS_CLICK

    def unconnected(self, session: Session, owner: str, names: tuple[str, ...], tool: str) -> list[str]:
        """The `names` that `owner` has no secret for, usable by `tool`."""
        found = set(
            session.scalars(
                select(Secret.name).where(
                    Secret.name.in_(names),
                    Secret.scope.in_([tool, ANY_TOOL]),
                    Secret.owner == owner,
                    Secret.team_id.is_(None),
                )
            )
        )
        return [name for name in names if name not in found]

    # -- approvals.ports.Credentials ------------------------------------------------------------

    def delegated_task_types(self) -> list[str]:
        return [name for name, settings in self.config.task_types.items() if settings.credentials is not None]

    def missing(self, session: Session, action: Action, approver: str) -> MissingCredential | None:
        names = self.names(action.task_type, action.tool)
        if not names:
            return None
        owner = self.owner(action, approver)
        if owner is None:
            return MissingCredential(None, list(names), "")
        unconnected = self.unconnected(session, owner, names, action.tool)
        if not unconnected:
            return None
        return MissingCredential(owner, unconnected, self.how(action.task_type, unconnected, owner, approver))

    # -- cards ----------------------------------------------------------------------------------

    def note(self, session: Session, action: Action) -> CredentialNote | None:
        names = self.names(action.task_type, action.tool)
        mode = self.mode(action.task_type)
        if not names or mode is None:
            return None
        owner = self.owner(action)
        connected = None if owner is None else not self.unconnected(session, owner, names, action.tool)
        how = self.how(action.task_type, names, owner, None)
        return CredentialNote(mode, names, owner, connected, how, self.web(names))


def connect_credential(
    vault: Vault, name: str, access_token: str, *, owner: str, scope: str, actor: str, oauth: OAuthGrant | None
) -> bool:
    """Store `owner`'s own credential `name` (sealed with what refreshes it) and queue an update of
    the cards that waited for it: `secrets connect` and the sign-in from Slack both end here.
    True if it replaced one."""
    replaced = vault.put(name, access_token, scope=scope, owner=owner, actor=actor, oauth=oauth)
    with vault.sessions.begin() as session:
        refresh_requesters_cards(session, owner, vault.clock.now())
    return replaced


def refresh_requesters_cards(session: Session, owner: str, now: datetime) -> int:
    """Queue a card update for every action `owner` requested that still waits for a decision:
    a card that said "not connected" says otherwise once they connect. Returns how many."""
    waiting = session.scalars(
        select(Action.public_id).where(Action.requester == owner, Action.state.in_(OPEN_FOR_DECISION))
    ).all()
    for action_id in waiting:
        outbox.enqueue(session, CardUpdated(action_id), now)
    return len(waiting)
