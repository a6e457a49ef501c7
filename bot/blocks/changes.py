"""What a coding agent's tool call changes, shown as code on its card: a shell command (Claude
Code's `Bash`) as a code block, a file edit (`Edit`, `MultiEdit`) as a diff of `old_string` →
`new_string`, a file written whole (`Write`, `NotebookEdit`) as its added lines.

Recognised by the params' shape, whatever the tool is called (an MCP tool taking a `command`
is shown the same way). The diff is drawn over the real lines, then each line is masked
(`approvals.masking` keeps a text's line count), so a line whose secret changed still shows
as changed. Cut to whole lines within Slack's 3,000 characters of a section, saying how many
more lines there are.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from approvals.masking import mask_text
from bot.blocks.kit import Block, section
from bot.blocks.text import code_block, escape, truncate
from bot.blocks.views import ChangeView

CODE_LIMIT = 2600  # characters of the code block, within a section's 3,000 with its heading
LINE_LIMIT = 500  # one line longer than this is cut
CONTEXT = 2  # unchanged lines around each change of a diff
PATH_KEYS = ("file_path", "notebook_path", "path")
WRITTEN = ("content", "new_source")
KIND_TITLES = {"command": "Command", "edit": "Edit", "write": "Write"}


def change_of(tool: str, params: Mapping[str, Any]) -> ChangeView | None:
    """The change `params` (the real ones) describe, masked for people; None for other shapes."""
    path_key = next((k for k in PATH_KEYS if isinstance(params.get(k), str)), None)
    path = mask_text(params[path_key]) if path_key else None
    if isinstance(params.get("command"), str):
        lines = tuple(mask_text(params["command"]).split("\n"))
        return ChangeView(kind="command", tool=tool, lines=lines, shown=("command",))
    if path_key and isinstance(params.get("old_string"), str) and isinstance(params.get("new_string"), str):
        note = "every occurrence" if params.get("replace_all") is True else ""
        lines = diff_lines(params["old_string"], params["new_string"])
        return ChangeView(
            kind="edit", tool=tool, lines=lines, path=path, shown=(path_key, "old_string", "new_string"), note=note
        )
    edits = params.get("edits")
    if path_key and isinstance(edits, list) and edits and all(_is_edit(e) for e in edits):
        edited: list[str] = []
        for number, edit in enumerate(edits, 1):
            every = " (every occurrence)" if edit.get("replace_all") is True else ""
            edited.append(f"@@ edit {number} of {len(edits)}{every} @@")
            edited += diff_lines(edit["old_string"], edit["new_string"])
        return ChangeView(kind="edit", tool=tool, lines=tuple(edited), path=path, shown=(path_key, "edits"))
    written = next((k for k in WRITTEN if isinstance(params.get(k), str)), None)
    if path_key and written:
        lines = tuple(f"+{line}" for line in mask_text(params[written]).split("\n"))
        return ChangeView(kind="write", tool=tool, lines=lines, path=path, shown=(path_key, written))
    return None


def diff_lines(old: str, new: str) -> tuple[str, ...]:
    """`old` → `new` as unified-diff lines (hunk headers, ` `, `-`, `+`), drawn over the real
    lines and shown masked."""
    real_old, real_new = old.split("\n"), new.split("\n")
    shown_old, shown_new = mask_text(old).split("\n"), mask_text(new).split("\n")
    if len(shown_old) != len(real_old) or len(shown_new) != len(real_new):  # masking keeps lines: never here
        real_old, real_new = shown_old, shown_new
    lines: list[str] = []
    matcher = difflib.SequenceMatcher(None, real_old, real_new, autojunk=False)
    for group in matcher.get_grouped_opcodes(CONTEXT):
        first, last = group[0], group[-1]
        lines.append(f"@@ -{first[1] + 1},{last[2] - first[1]} +{first[3] + 1},{last[4] - first[3]} @@")
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                lines += [f" {line}" for line in shown_old[i1:i2]]
                continue
            lines += [f"-{line}" for line in shown_old[i1:i2]]
            lines += [f"+{line}" for line in shown_new[j1:j2]]
    return tuple(lines) or ("(no change)",)


def change_blocks(change: ChangeView) -> list[Block]:
    """The change as one section: a heading (what, which file), the code, "… N more lines"."""
    title = KIND_TITLES.get(change.kind, change.kind.capitalize())
    heading = f"*{title}* (`{escape(truncate(change.tool, 80))}`)"
    if change.path:
        path = escape(truncate(change.path, 300)).replace("`", "'")
        heading += f" · `{path}`"
    if change.note:
        heading += f" · _{escape(change.note)}_"
    kept, size = [], 0
    for line in change.lines:
        line = truncate(line, LINE_LIMIT)
        cost = len(escape(line)) + 1 + line.count("```")
        if size + cost > CODE_LIMIT:
            break
        kept.append(line)
        size += cost
    left = len(change.lines) - len(kept)
    more = f"\n_… {left} more line{'s' if left != 1 else ''}_" if left else ""
    code = code_block("\n".join(kept), CODE_LIMIT + 100)
    return [section("change", f"{heading}\n{code}{more}", verbatim=True)]


def _is_edit(edit: Any) -> bool:
    return isinstance(edit, dict) and all(isinstance(edit.get(key), str) for key in ("old_string", "new_string"))
