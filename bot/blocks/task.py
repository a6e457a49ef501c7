"""Messages about a task's progress: budget and loop pauses, stalls, choosing a type, the final answer."""

from __future__ import annotations

from bot import action_ids
from bot.blocks.kit import Block, actions, button, confirm_dialog, context, section
from bot.blocks.text import action_name, escape, mention, quote, split, truncate
from bot.blocks.views import ActionOutcomeView, TaskView

REASON_LIMIT = 1000
REQUEST_LIMIT = 500
ANSWER_PART = 2900
ANSWER_PARTS = 3
BUTTONS_PER_BLOCK = 25
MAX_CANDIDATES = 25 * 10
OUTCOME_LINES = 10
NOTE_LIMIT = 300


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
        problem = next((a for a in view.actions if not _clean(a)), None)
        if problem is None:
            line, what = ":white_check_mark: *Done.*", "done"
        else:  # never "Done" when something did not run as drafted: say what happened first
            line, what = f":warning: *Finished:* {outcome_line(problem, icon=False)}", f"finished, {problem.state}"
        blocks = [title, section("status", line, verbatim=True), *_outcomes(view)]
        blocks += [section(f"answer_{i}", part, verbatim=True) for i, part in enumerate(parts)]
        return _text(view, what), [*blocks, context("usage", _usage(view))]
    if state in ("failed", "cancelled"):
        icon = ":x:" if state == "failed" else ":heavy_multiplication_x:"
        line = f"{icon} *{state.capitalize()}.* {reason}"
        blocks = [title, section("status", line, verbatim=True), *_outcomes(view), context("usage", _usage(view))]
        return _text(view, state), blocks
    return _text(view, state), [title, section("status", f"State: {escape(state)}")]


def _clean(action: ActionOutcomeView) -> bool:
    return action.state == "succeeded" and action.resolution is None


def outcome_line(action: ActionOutcomeView, *, icon: bool = True) -> str:
    """How one action ended, with who decided and their reason (mrkdwn)."""
    tool = truncate(action_name(action.summary, action.tool), 200)
    by = f" by {mention(action.decided_by)}" if action.decided_by else ""
    note = f" — “{truncate(escape(action.note), NOTE_LIMIT)}”" if action.note else ""
    error = truncate(escape(action.error), NOTE_LIMIT) if action.error else "no error message"
    resolver = mention(action.resolved_by) if action.resolved_by else "a person"
    unknown = f"{tool}: its outcome was unknown; {resolver} says it"
    state = action.state
    if action.resolution == "resolve_ran" and state == "succeeded":
        mark, text = ":ballot_box_with_check:", f"{unknown} ran{note}"
    elif action.resolution == "resolve_not_run" and state == "failed":
        mark, text = ":heavy_multiplication_x:", f"{unknown} did not run{note}"
    elif state == "succeeded" and action.resolution == "run_again":
        mark, text = ":large_green_circle:", f"{tool} ran again after its outcome was unknown ({resolver} asked)"
    elif state == "succeeded":
        mark, text = ":large_green_circle:", f"{tool} ran"
    elif state == "failed":
        mark, text = ":red_circle:", f"{tool} failed: {error}"
    elif state == "rejected":
        mark, text = ":x:", f"{tool} was rejected{by}{note}"
    elif state == "vetoed":
        mark, text = ":no_entry:", f"{tool} was vetoed{by} before it ran{note}"
    elif state == "expired":
        mark, text = ":hourglass:", f"{tool} expired: nobody decided in time, so it did not run"
    elif state == "unknown":
        mark, text = ":warning:", f"{tool}: outcome unknown; a person must say whether it ran"
    elif state == "cancelled":
        mark, text = ":heavy_multiplication_x:", f"{tool} was cancelled and did not run"
    elif state == "refused":
        mark, text = ":no_entry_sign:", f"{tool} was refused and did not run: {error}"
    else:
        mark, text = ":hourglass_flowing_sand:", f"{tool}: {escape(state)}"
    return f"{mark} {text}" if icon else text


def _outcomes(view: TaskView) -> list[Block]:
    """A line per action (the newest `OUTCOME_LINES`), when any did not simply run."""
    if all(_clean(action) for action in view.actions):
        return []
    shown = view.actions[-OUTCOME_LINES:]
    lines = [outcome_line(action) for action in shown]
    if len(view.actions) > len(shown):
        lines.insert(0, f"_…{len(view.actions) - len(shown)} earlier actions_")
    return [section("actions", "\n".join(lines), verbatim=True)]


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
