"""The approval card: one drafted action, its buttons while it is open, and its outcome after."""

from __future__ import annotations

import math

from bot import action_ids
from bot.blocks.changes import change_blocks
from bot.blocks.kit import Block, actions, button, confirm_dialog, context, header, section
from bot.blocks.params import consequential, format_value, label, params_blocks, plain_value
from bot.blocks.text import action_name, code_block, escape, mention, quote, seconds_text, slack_date, to_json, truncate
from bot.blocks.views import CardView
from core.states import OPEN_FOR_DECISION, WITH_EXECUTOR, ActionState

REQUEST_LIMIT = 1500
REQUEST_LINES = 15
RATIONALE_LIMIT = 1000
NOTE_LIMIT = 500
ERROR_LIMIT = 1000
RESULT_LIMIT = 2800
DIFF_FIELDS = 10
DIFF_VALUE_LIMIT = 100
SHORT_HASH = 12

DECIDE = "decide"
# The states of an action that was let run: its card says how the run went.
RUN_STATES = WITH_EXECUTOR | {ActionState.SUCCEEDED, ActionState.FAILED, ActionState.UNKNOWN}
RISK_ICONS = {"low": ":large_green_circle:", "medium": ":large_orange_circle:", "high": ":red_circle:"}
MODE_LABELS = {"hitl": "approve first", "hotl": "veto window", "auto": "autonomous (runs, then reports)"}
STATE_LABELS = {
    "pending": "Approval needed",
    "scheduled": "Runs unless vetoed",
    "approved": "Approved",
    "executing": "Running",
    "succeeded": "Succeeded",
    "failed": "Failed",
    "unknown": "Outcome unknown",
    "rejected": "Rejected",
    "vetoed": "Vetoed",
    "expired": "Expired",
    "cancelled": "Cancelled",
    "refused": "Refused",
}
UNKNOWN_OUTCOME = "interrupted or timed out mid-call and not re-run; a person must check whether it happened"
RESOLVED = {"resolve_ran": "says it ran", "resolve_not_run": "says it did not run"}


def decide_block_id(params_hash: str, suffix: str | None = None, *, tool_hash: str = "") -> str:
    """`decide:{params_hash}.{tool_hash}` (a card), or `…:{suffix}` (App Home, many cards in one
    view): what the clicker saw, params and tool definition, which their click is bound to."""
    seen = f"{params_hash}.{tool_hash}" if tool_hash else params_hash
    return f"{DECIDE}:{seen}" + (f":{suffix}" if suffix else "")


def params_hash_from_block_id(block_id: str) -> str | None:
    """The params hash the clicker saw, from the block_id of the buttons' actions block."""
    parts = block_id.split(":")
    return parts[1].partition(".")[0] or None if len(parts) >= 2 and parts[0] == DECIDE else None


def tool_hash_from_block_id(block_id: str) -> str | None:
    """The tool definition the clicker saw; None from a card drawn before cards showed it."""
    parts = block_id.split(":")
    return parts[1].partition(".")[2] or None if len(parts) >= 2 and parts[0] == DECIDE else None


def card_text(card: CardView) -> str:
    """The message's top-level `text`: notifications and screen readers. No mentions; the summary (params) escaped."""
    label = STATE_LABELS.get(card.state, card.state.capitalize() or "Action")
    what = " ".join(card.summary.split()) or card.tool
    return truncate(escape(f"{label}: {what} ({card.task_type}, {card.risk} risk)"), 300)


def card_buttons(card: CardView) -> list[Block]:
    """The buttons of an open card (the same on the card and in App Home); none once it is closed."""
    value = card.action_public_id
    if card.state == "pending":
        confirm = approve_confirm(card)
        buttons = [
            button("Approve", action_ids.APPROVE, value, style="primary", confirm=confirm),
            button("Reject", action_ids.REJECT, value, style="danger"),
        ]
        if card.editable:  # else its client would never see the edit
            buttons.append(button("Edit", action_ids.EDIT, value))
        if card.allow_similar:
            buttons.append(button("Approve, and allow similar…", action_ids.ALLOW_SIMILAR, value))
    elif card.state == "scheduled":
        buttons = [button("Veto", action_ids.VETO, value, style="danger")]
    elif card.state == "unknown":
        return [
            button("It ran", action_ids.RESOLVE_RAN, value, style="primary"),
            button("It did not run", action_ids.RESOLVE_NOT_RUN, value),
        ]
    elif card.state == "succeeded":
        return [*incident_buttons(card), *undo_buttons(card)]
    else:
        return []
    if not card.acknowledged_by:
        buttons.append(button("Acknowledge", action_ids.ACKNOWLEDGE, value))
    return buttons


def incident_buttons(card: CardView) -> list[Block]:
    """Runs nobody approved can still be reported: that evidence demotes the task type."""
    if card.mode == "hitl" or card.outcome == "incident":
        return []
    confirm = confirm_dialog("Report this run?", "Its task type goes back to approve-first.", "Report", "Cancel")
    value = card.action_public_id
    return [button("This was wrong", action_ids.REPORT_INCIDENT, value, style="danger", confirm=confirm)]


def undo_offered(card: CardView) -> bool:
    """Whether the receipt offers Undo when drawn: its window is open and nobody asked yet."""
    return (
        card.undo_until is not None
        and card.undo_action is None
        and card.rendered_at is not None
        and card.rendered_at < card.undo_until
    )


def undo_buttons(card: CardView) -> list[Block]:
    if not undo_offered(card):
        return []
    confirm = confirm_dialog(
        "Undo this run?",
        "It drafts the compensating action; someone other than you approves it before it runs.",
        "Draft the undo",
        "Cancel",
    )
    return [button("Undo", action_ids.UNDO, card.action_public_id, confirm=confirm)]


def undo_text(card: CardView) -> str | None:
    """A receipt's line about Undo (offered until when, asked by whom, how it stands), or a
    compensation's about what it undoes; None when neither applies."""
    icon = ":leftwards_arrow_with_hook:"
    if card.undoes:
        what = truncate(action_name(card.undoes_summary, card.undoes_tool), 300)
        return f"{icon} *Undoes* {what} (action `{escape(card.undoes)}`), which ran and succeeded."
    if card.undo_action is not None:
        by = f" by {mention(card.undo_asked_by)}" if card.undo_asked_by else ""
        if card.undo_state == "succeeded":
            return f"{icon} *Undone*: its undo (action `{escape(card.undo_action)}`), asked for{by}, succeeded."
        state = STATE_LABELS.get(card.undo_state or "", card.undo_state or "").lower()
        return f"{icon} Undo asked for{by}: action `{escape(card.undo_action)}` ({escape(state)})."
    if undo_offered(card) and card.undo_until is not None:
        return f"{icon} Undo is offered until {slack_date(card.undo_until)}."
    return None


def approve_confirm(card: CardView) -> Block | None:
    """Slack's confirm dialog on Approve of a high-risk action, naming the consequence: what it
    does and its consequential parameter ("The refund of order 1001: amount 1,200.00 (120,000
    cents). Approve it?"). Attention to a warning shown every time fades; this one asks a question."""
    if card.risk != "high":
        return None
    what = " ".join(card.summary.split()) or card.tool
    lead = consequential(card.params, card.param_schema)
    consequence = f": {label(lead)} {plain_value(lead, card.params[lead], card.param_schema)}" if lead else ""
    # Escaped as any text Slack reads: a `<!channel>` in a parameter stays text here too.
    text = truncate(escape(f"{what[:1].upper()}{what[1:]}{consequence}."), 260) + " Approve it?"
    return confirm_dialog("High risk: approve?", text, "Approve", "Cancel", style="primary")


def consequence_text(card: CardView) -> str | None:
    """A high-risk card's first line after its header: what it does and the value that matters."""
    if card.risk != "high":
        return None
    what = truncate(action_name(card.summary, card.tool, capital=True), 300)
    lead = consequential(card.params, card.param_schema)
    if lead is None:
        return f":rotating_light: *{what}*"
    found = ((card.param_schema or {}).get("properties") or {}).get(lead)
    prop = found if isinstance(found, dict) else {}
    value = format_value(lead, card.params[lead], prop)
    return f":rotating_light: *{what}* · *{escape(label(lead))}: {value}*"


def approval_card(card: CardView) -> list[Block]:
    """The card's blocks, for its first post and for every update in place. A high-risk card
    leads with its consequence (what it does, the value that matters) and puts that parameter
    first, highlighted; its Approve asks to confirm."""
    icon = RISK_ICONS.get(card.risk, ":white_circle:")
    consequence = consequence_text(card)
    lead = consequential(card.params, card.param_schema) if consequence else None
    blocks = [
        header("header", f"{icon} {card.task_type} · {card.risk} risk"),
        *([section("consequence", consequence, verbatim=True)] if consequence else []),
        section("request", request_text(card), verbatim=True),
        section("proposal", proposal_text(card), verbatim=True),
        *(change_blocks(card.change) if card.change else []),
        *params_blocks(
            card.params,
            card.params_hash,
            card.param_schema,
            card.diff,
            lead=lead,
            shown_above=card.change.shown if card.change else (),
            masked=card.masked,
        ),
        context("meta", meta_text(card)),
        context("mode", mode_text(card)),
    ]
    if card.tool_changed_at is not None:
        blocks.append(context("tool_changed", tool_changed_text(card)))
    rule = rule_text(card)
    if rule:
        blocks.append(context("rule", rule))
    if card.model:
        blocks.append(context("model", model_text(card)))
    if card.caps:
        caps = "; ".join(escape(cap) for cap in card.caps)
        blocks.append(context("caps", f":lock: A person decides because: {caps}", verbatim=True))
    credential = credential_text(card)
    if credential:
        blocks.append(context("credential", credential, verbatim=True))
    if card.diff:
        blocks.append(section("diff", diff_text(card), verbatim=True))
    outcome = outcome_text(card)
    if outcome:
        blocks.append(section("outcome", outcome, verbatim=True))
    if card.state == "unknown":
        blocks.append(section("unknown", unknown_text(card), verbatim=True))
    undo = undo_text(card)
    if undo:
        blocks.append(section("undo", undo, verbatim=True))
    if card.acknowledged_by and card.state in OPEN_FOR_DECISION:
        blocks.append(context("ack", f":eyes: Acknowledged by {mention(card.acknowledged_by)}"))
    buttons = card_buttons(card)
    if buttons:
        blocks.append(actions(decide_block_id(card.params_hash, tool_hash=card.tool_hash), buttons))
    return blocks


def meta_text(card: CardView) -> str:
    """The hashes a decision binds to (params, tool definition) and the ids, as details."""
    tool = f" · tool `{escape(card.tool_hash[:SHORT_HASH])}`" if card.tool_hash else ""
    return (
        f"params `{escape(card.params_hash[:SHORT_HASH])}`{tool} · action `{escape(card.action_public_id)}`"
        f" · task `{escape(card.task_public_id)}`"
    )


def rule_text(card: CardView) -> str | None:
    """The standing rule behind the card: the one that let it run sooner, or the one made with its approval."""
    if card.rule_public_id:
        return f":scroll: Allowed by standing rule `{escape(card.rule_public_id)}` (`countersign rules list`)"
    if card.rule_made:
        return f":scroll: Approved with a standing rule for similar actions: `{escape(card.rule_made)}`"
    return None


def tool_changed_text(card: CardView) -> str:
    when = f" ({slack_date(card.tool_changed_at)})" if card.tool_changed_at else ""
    text = f":warning: *Tool changed since drafted*{when}: its schema or description is not what it was"
    if card.state in OPEN_FOR_DECISION:
        return text + "; approvals given before no longer count: decide again."
    return text + "."


def result_reply(card: CardView) -> tuple[str, list[Block]]:
    """The thread reply after execution: the result (JSON, truncated) or the error."""
    tool = truncate(action_name(card.summary, card.tool, capital=True), 200)
    if card.state == "succeeded" and card.handed_to is not None:
        to = truncate(escape(card.handed_to), 100)
        text = f":outbox_tray: {tool} was handed to {to}, which runs it itself: its outcome is not reported here."
        body = ""
    elif card.state == "succeeded":
        text = f":large_green_circle: {tool} succeeded."
        body = code_block(card.result, RESULT_LIMIT) if card.result is not None else "_It returned no result._"
    elif card.state == "failed":
        text = f":red_circle: {tool} failed."
        body = code_block(card.error or "no error message", RESULT_LIMIT)
    elif card.state == "unknown":
        text = f":warning: {tool}: outcome unknown; {UNKNOWN_OUTCOME}."
        body = code_block(card.error, RESULT_LIMIT) if card.error else ""
    else:
        text = f"{tool}: {escape(STATE_LABELS.get(card.state, card.state)).lower()}."
        body = ""
    blocks = [section("result", f"{text}\n{body}" if body else text, verbatim=True)]
    blocks.append(
        context("result_meta", f"action `{escape(card.action_public_id)}` · params `{card.params_hash[:SHORT_HASH]}`")
    )
    return truncate(text.replace("`", ""), 300), blocks


def asked_note(card: CardView, link: str | None) -> str:
    """In the thread where a person asked: what was drafted, where it is decided (or that it runs)."""
    what = truncate(action_name(card.summary, card.tool, capital=True), 300)
    where = f"<{link}|its card>" if link and "|" not in link and ">" not in link else "its card"
    if card.state == "pending":
        return f":raised_hand: {what} needs an approver's decision: see {where} (action `{card.action_public_id}`)."
    if card.state == "scheduled":
        return f":alarm_clock: {what} runs unless someone vetoes it: see {where} (action `{card.action_public_id}`)."
    return f":robot_face: {what}: see {where} (action `{card.action_public_id}`); its result follows here."


def request_text(card: CardView) -> str:
    who = f"from {mention(card.requester)}" if card.requester else "via the API"
    quoted = (
        quote(truncate(escape(card.request_text), REQUEST_LIMIT), REQUEST_LINES)
        if card.request_text.strip()
        else "_(empty)_"
    )
    return f"*Request* {who}:\n{quoted}"


def confidence_text(card: CardView) -> str:
    confidence = card.confidence if math.isfinite(card.confidence) else 0.0  # malformed counts as 0
    text = f"{confidence:.0%}"
    if confidence < card.confidence_threshold:
        text += f" :warning: low confidence (below {card.confidence_threshold:.0%})"
    return text


def proposal_text(card: CardView) -> str:
    rationale = truncate(escape(card.rationale), RATIONALE_LIMIT) if card.rationale.strip() else "_none given_"
    what = (
        f"{truncate(action_name(card.summary, card.tool), 300)} (`{escape(card.tool)}`)"
        if card.summary
        else (f"`{escape(card.tool)}`")
    )
    return f"*Proposed:* {what}\n*Why:* {rationale}\n*Confidence:* {confidence_text(card)}"


def model_text(card: CardView) -> str:
    if card.fallback:
        model = escape(card.model or "?")
        return f":twisted_rightwards_arrows: Drafted by the fallback model `{model}`: the primary model was unavailable"
    return f"Drafted by `{escape(card.model or '?')}`"


def mode_text(card: CardView) -> str:
    if card.state == "pending":
        text = ":raised_hand: Approve first"
        if card.quorum > 1:
            text += f" · {card.approvals} of {card.quorum} approvals"
        return text
    if card.state == "scheduled":
        return f":alarm_clock: {veto_deadline_text(card)}"
    return f"Mode: {MODE_LABELS.get(card.mode, escape(card.mode))}"


def veto_deadline_text(card: CardView) -> str:
    """When a scheduled action runs, to the second, and how long is left when the card is drawn:
    "Runs in 30 s, at 12:28:41" (each reader's own clock, through Slack's date formatting)."""
    if card.run_at is None:
        return "Runs after its veto window unless vetoed"
    at = slack_date(card.run_at)
    if card.rendered_at is None:
        return f"Runs {at} unless vetoed"
    left = (card.run_at - card.rendered_at).total_seconds()
    if left <= 0:
        return f"Its veto window ended {at}: it runs now"
    return f"Runs in {seconds_text(left)}, {at}, unless vetoed"


def credential_text(card: CardView) -> str | None:
    """Whose own credential the tool runs with and, while the card is open, what is missing."""
    credential = card.credential
    if credential is None:
        return None
    names = ", ".join(f"`{escape(name)}`" for name in credential.names)
    how = escape(credential.how)
    if credential.owner is None and credential.mode == "requester":
        return f":warning: Runs with the requester's own {names}, but this request has none: it cannot be approved."
    if credential.owner is None and credential.web:
        return f":key: Runs with the approver's own {names}: {how}."
    if credential.owner is None:
        return f":key: Runs with the approver's own {names}: connect yours before you approve ({how})."
    whose = f"{mention(credential.owner)}'s own {names}"
    if card.state == "pending" and credential.connected is False:
        return f":warning: Runs with {whose}, not connected yet: it cannot be approved until they connect it ({how})."
    if card.state in OPEN_FOR_DECISION and credential.connected is False:
        return f":warning: Runs with {whose}, not connected yet: it fails unless they connect it first ({how})."
    return f":key: Runs with {whose}."


def credential_notice(card: CardView) -> str:
    """A direct message to the person whose credential an action could not use."""
    error = truncate(escape(card.error), ERROR_LIMIT) if card.error else "no error message"
    return (
        f"*{truncate(action_name(card.summary, card.tool, capital=True), 300)}* ({escape(card.task_type)}, "
        f"action `{card.action_public_id}`) could not run with your credential, so it did not run:\n{error}"
    )


def diff_text(card: CardView) -> str:
    who = f" by {mention(card.edited_by)}" if card.edited_by else ""
    lines = [f":pencil2: *Edited{who}:*"]
    items = sorted((card.diff or {}).items())
    for name, change in items[:DIFF_FIELDS]:
        lines.append(f"`{truncate(escape(name), 60)}`: {_diff_value(change, 'from')} → {_diff_value(change, 'to')}")
    if len(items) > DIFF_FIELDS:
        lines.append(f"_…and {len(items) - DIFF_FIELDS} more_")
    return "\n".join(lines)


def _diff_value(change: dict[str, object], key: str) -> str:
    if key not in change:
        return "_unset_"
    return truncate(escape(to_json(change[key], indent=None)), DIFF_VALUE_LIMIT)


def outcome_text(card: CardView) -> str | None:
    """What happened to the action, with who and when; None while it is still open."""
    by = f" by {mention(card.decided_by)}" if card.decided_by else ""
    when = f" {slack_date(card.decided_at)}" if card.decided_at else ""
    note = f" — {truncate(escape(card.decision_note), NOTE_LIMIT)}" if card.decision_note else ""
    error = truncate(escape(card.error), ERROR_LIMIT) if card.error else "no error message"
    state = card.state
    if state == "rejected":
        return f":x: Rejected{by}{when}{note}"
    if state == "vetoed":
        return f":no_entry: Vetoed{by}{when}{note}"
    if state == "expired":
        return f":hourglass: Expired{when}: nobody decided in time{note}"
    if state == "cancelled":
        return f":heavy_multiplication_x: Cancelled{by}{when}{note}"
    if state == "refused":
        return f":no_entry_sign: Refused: {error}"
    if state not in RUN_STATES:
        return None
    if card.resolution == "run_again" and card.decided_by:
        approval = f":repeat: Its outcome was unknown; run again{by}{when}"
    elif card.decided_by:
        approval = f":white_check_mark: Approved{' with edits' if card.diff else ''}{by}{when}"
    elif card.mode == "hotl":
        approval = f":white_check_mark: Not vetoed in the veto window{when}"
    elif card.mode == "auto":
        approval = ":robot_face: Ran on its own (autonomous)"
    else:
        approval = f":white_check_mark: Approved{when}"
    run = {
        "approved": ":hourglass_flowing_sand: Queued to run",
        "executing": ":gear: Running…",
        "succeeded": ":large_green_circle: Succeeded (result in the thread)",
        "failed": f":red_circle: Failed: {error}",
        "unknown": f":warning: Outcome unknown: {UNKNOWN_OUTCOME}",
    }[state]
    if state == "succeeded" and card.handed_to is not None:
        run = f":outbox_tray: Handed to {truncate(escape(card.handed_to), 100)}, which runs it itself"
    if card.resolution in RESOLVED and state in ("succeeded", "failed") and card.resolved_by:
        said = f" {slack_date(card.resolved_at)}" if card.resolved_at else ""
        resolution_note = f" — {truncate(escape(card.resolution_note), NOTE_LIMIT)}" if card.resolution_note else ""
        icon = ":ballot_box_with_check:" if state == "succeeded" else ":heavy_multiplication_x:"
        run = (
            f"{icon} Outcome was unknown; {mention(card.resolved_by)} {RESOLVED[card.resolution]}{said}"
            f"{resolution_note}"
        )
    return f"{approval}\n{run}"


def unknown_text(card: CardView) -> str:
    """What is known of a call whose outcome is not, and what the people who resolve it decide."""
    started = slack_date(card.started_at) if card.started_at else "at a time not recorded"
    holder = f"`{escape(card.lease_owner)}`" if card.lease_owner else "a process not recorded"
    lines = [
        "*Did it run?* Check the system it acts on, then say which:",
        f"• the call started {started}, held by {holder}",
        f"• idempotency key `{escape(card.action_public_id)}` (look for it in the target system's logs)",
        "• *It ran*: the agent is told so. *It did not run*: the agent is told so, or you ask to run it again"
        + (f" ({card.quorum} approvers needed)" if card.quorum > 1 else ""),
    ]
    if card.run_again_votes:
        lines.append(f":repeat: {card.run_again_votes} of {card.quorum} asked to run it again")
    return "\n".join(lines)
