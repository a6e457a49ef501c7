"""Messages about a task's progress: budget and loop pauses, stalls, choosing a type, the final answer."""

from __future__ import annotations

from bot import action_ids
from bot.blocks.kit import Block, actions, button, confirm_dialog, context, section
from bot.blocks.text import escape, mention, quote, split, truncate
from bot.blocks.views import TaskView

REASON_LIMIT = 1000
REQUEST_LIMIT = 500
ANSWER_PART = 2900
ANSWER_PARTS = 3
BUTTONS_PER_BLOCK = 25
MAX_CANDIDATES = 25 * 10


def task_message(view: TaskView) -> tuple[str, list[Block]]:
    """(top-level text, blocks) of the message that tells people where a task stands."""
    who = f" for {mention(view.requester)}" if view.requester else ""
    title = context("task", f"*{escape(view.task_type)}* task `{escape(view.task_public_id)}`{who}")
    reason = truncate(escape(view.reason), REASON_LIMIT) if view.reason else ""
    state = view.state
    if view.candidates and state not in ("succeeded", "failed", "cancelled"):
        return _choose_type(view, title)
    if state == "stalled" or (state == "paused" and view.kind == "model_unavailable"):
        line = f":warning: *Paused: model unavailable.* {reason}\nIt is retried on its own; nothing is lost."
        return _text(view, "paused, model unavailable"), [title, section("status", line, verbatim=True)]
    if state == "paused":
        if view.kind == "budget":
            line = f":pause_button: *Paused: it reached its budget.* {reason}"
            buttons = [
                button("Extend once", action_ids.EXTEND_BUDGET, view.task_public_id, style="primary"),
                _stop(view),
            ]
        elif view.kind == "loop":
            line = f":repeat: *Paused: the agent seems to be going in circles.* {reason}"
            buttons = [_stop(view)]
        else:
            line = f":pause_button: *Paused.* {reason}"
            buttons = [_stop(view)]
        blocks = [title, section("status", line, verbatim=True), context("usage", _usage(view))]
        return _text(view, "paused"), [*blocks, actions("task_controls", buttons)]
    if state == "running":  # only sent when a stalled task resumes
        line = ":arrow_forward: *Resumed.*" + (f" {reason}" if reason else "")
        return _text(view, "resumed"), [title, section("status", line, verbatim=True)]
    if state == "waiting":
        line = ":hourglass_flowing_sand: Waiting for decisions on its actions."
        return _text(view, "waiting"), [title, section("status", line)]
    if state == "succeeded":
        answer = escape(view.final_text or "")
        parts = split(answer, ANSWER_PART, ANSWER_PARTS) if answer.strip() else ["_It finished without an answer._"]
        blocks = [title, section("status", ":white_check_mark: *Done.*")]
        blocks += [section(f"answer_{i}", part, verbatim=True) for i, part in enumerate(parts)]
        return _text(view, "done"), [*blocks, context("usage", _usage(view))]
    if state in ("failed", "cancelled"):
        icon = ":x:" if state == "failed" else ":heavy_multiplication_x:"
        line = f"{icon} *{state.capitalize()}.* {reason}"
        return _text(view, state), [title, section("status", line, verbatim=True), context("usage", _usage(view))]
    return _text(view, state), [title, section("status", f"State: {escape(state)}")]


def _text(view: TaskView, what: str) -> str:
    return truncate(escape(f"{view.task_type} task {view.task_public_id}: {what}"), 300)


def _usage(view: TaskView) -> str:
    return f"{view.steps} steps · {view.tokens:,} tokens · ${view.cost_usd:,.2f}"


def _stop(view: TaskView) -> Block:
    dialog = confirm_dialog(
        "Stop this task?", "The agent stops now; its open actions are cancelled.", "Stop it", "Keep it"
    )
    return button("Stop", action_ids.STOP_TASK, view.task_public_id, style="danger", confirm=dialog)


def _choose_type(view: TaskView, title: Block) -> tuple[str, list[Block]]:
    request = truncate(escape(view.request_text), REQUEST_LIMIT)
    line = ":thinking_face: *Which kind of task is this?*" + (f"\n{quote(request)}" if request.strip() else "")
    blocks = [title, section("choose", line, verbatim=True)]
    candidates = view.candidates[:MAX_CANDIDATES]
    buttons = [
        button(candidate, action_ids.CHOOSE_TYPE, f"{view.task_public_id}:{candidate}") for candidate in candidates
    ]
    for start in range(0, len(buttons), BUTTONS_PER_BLOCK):
        blocks.append(actions(f"choose_type_{start // BUTTONS_PER_BLOCK}", buttons[start : start + BUTTONS_PER_BLOCK]))
    if len(view.candidates) > MAX_CANDIDATES:
        blocks.append(context("choose_more", f"_…and {len(view.candidates) - MAX_CANDIDATES} more types_"))
    return _text(view, "choose a task type"), blocks
