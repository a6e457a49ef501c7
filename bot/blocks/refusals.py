"""What a refused click says to the person who clicked: in their words ("you"), people as
mentions, the action by what it does, its id only as a detail. The domain's own message
(`str(refusal)`) stays what logs, the CLI and the API show."""

from __future__ import annotations

import re
from collections.abc import Callable

from approvals.errors import (
    AlreadyAcknowledged,
    AlreadyApprovedByYou,
    AlreadyDecided,
    CredentialMissing,
    DecisionRefused,
    NotAnApprover,
    NotApplicable,
    NotEditable,
    OtherWorkspace,
    ReasonRequired,
    SelfApproval,
    StaleParams,
    ToolChanged,
)
from approvals.proposals import NotAnAdmin
from bot.blocks.text import escape, mention, mention_ids, slack_date

# How a decided action stands, for a click that came too late.
DECIDED = {
    "approved": "is already approved",
    "executing": "is already approved and running",
    "succeeded": "already succeeded",
    "failed": "already failed",
    "unknown": "already ran, with an unknown outcome",
    "rejected": "is already rejected",
    "vetoed": "is already vetoed",
    "expired": "already expired",
    "cancelled": "is already cancelled",
}


def refusal_text(refusal: Exception, what: str | None) -> str:
    """The answer to a refused click; `what` names the action (mrkdwn), None when it is not known."""
    it = what or "this action"
    if isinstance(refusal, NotAnApprover):
        return f":no_entry_sign: You are not an approver of {it}: your click changed nothing."
    if isinstance(refusal, SelfApproval):
        return f":no_entry_sign: You requested {it}, so you cannot approve it: someone else must."
    if isinstance(refusal, AlreadyApprovedByYou):
        return f":no_entry_sign: You already approved {it}; it needs another approver."
    if isinstance(refusal, StaleParams):
        return f":warning: The parameters of {it} changed since you saw them: look at the card again."
    if isinstance(refusal, ToolChanged):
        changed = "changed since you saw it (its schema or description)"
        return f":warning: The tool of {it} {changed}: look at the card again."
    if isinstance(refusal, AlreadyDecided):
        by = f" by {mention(refusal.by)}" if refusal.by else ""
        when = f" {slack_date(refusal.at)}" if refusal.at else ""
        state = DECIDED.get(refusal.state, f"is already {escape(refusal.state)}")
        return f":information_source: {_capital(it)} {state}: decided{by}{when}."
    if isinstance(refusal, AlreadyAcknowledged):
        by, when = mention(refusal.by), slack_date(refusal.at)
        return f":information_source: {_capital(it)} was already acknowledged by {by} {when}."
    if isinstance(refusal, NotApplicable):
        state, kind = escape(refusal.state), escape(refusal.kind)
        return f":information_source: {_capital(it)} is {state}: it cannot take a {kind}."
    if isinstance(refusal, NotEditable):
        return (
            f":information_source: {_capital(it)} cannot be edited: its client runs it with the parameters it asked "
            "for and would never see an edit. Approve it as it is, or reject it saying what to change."
        )
    if isinstance(refusal, ReasonRequired):
        return f":warning: Say why: {it} needs a reason."
    if isinstance(refusal, OtherWorkspace):  # as if it did not exist: nothing of it is told
        return f":no_entry_sign: There is no action `{escape(refusal.action_public_id)}` in your workspace."
    if isinstance(refusal, NotAnAdmin):
        return ":no_entry_sign: You are not an admin: only admins change autonomy levels."
    if isinstance(refusal, CredentialMissing) and refusal.owner and refusal.owner != refusal.actor:
        listed = ", ".join(f"`{escape(name)}`" for name in refusal.names)
        return (
            f":key: {_capital(it)} runs with {mention(refusal.owner)}'s own {listed}, which they have not connected: "
            "it cannot be approved until they do."
        )
    text = mention_ids(escape(str(refusal)))
    if isinstance(refusal, DecisionRefused) and what and refusal.action_public_id:
        text = text.replace(f"action '{escape(refusal.action_public_id)}'", what)
    return text


_EMOJI = re.compile(r"^:[a-z0-9_+-]+: ")
_DATE = re.compile(r"<!date\^[^|>]*\|([^>]*)>")
_MENTION = re.compile(r"<@([UW][A-Z0-9]+)>")


def as_plain(text: str, name: Callable[[str], str | None]) -> str:
    """A refusal for a plain-text place (a form's field error): no emoji code, dates as their
    fallback, people by `name` (their Slack name) or "someone", Slack's escapes undone."""
    text = _EMOJI.sub("", text)
    text = _DATE.sub(lambda found: found.group(1), text)
    text = _MENTION.sub(lambda found: "@" + (name(found.group(1)) or "someone"), text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]
