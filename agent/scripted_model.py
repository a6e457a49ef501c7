"""A model that replies from a YAML script: the offline demo's agent, and tests' without HTTP.

```yaml
refund:                                  # task type (or `default`)
  match: 'order (?P<order_id>\\d+)'      # optional: named groups fill {order_id} below
  replies:
    - text: Let me look that order up.
      tool_use:
        - {name: lookup_order, input: {order_id: "{order_id}"}, rationale: Check it exists, confidence: 0.95}
    - tool_use: [{name: issue_refund, input: {order_id: "{order_id}", amount_cents: 500}}]
    - text: Refunded order {order_id}.
```

Which reply comes next is the number of assistant turns already in the conversation, so the
script keeps no state of its own and resumes correctly after a restart.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from agent.model import ModelReply, ModelRequest, Usage
from agent.pricing import SCRIPTED

DEFAULT = "default"


class ScriptedModel:
    def __init__(self, script: dict[str, Any]) -> None:
        self.script = script

    @classmethod
    def from_file(cls, path: str | Path) -> ScriptedModel:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: a script is a mapping of task type to replies")
        return cls(loaded)

    def complete(self, request: ModelRequest) -> ModelReply:
        entry = self.script.get(request.task_type) or self.script.get(DEFAULT) or {}
        replies: list[dict[str, Any]] = entry.get("replies", []) if isinstance(entry, dict) else entry
        turn = sum(1 for message in request.messages if message["role"] == "assistant")
        fields = _fields(entry.get("match") if isinstance(entry, dict) else None, _request_text(request))
        if turn >= len(replies):
            return _reply(request, [{"type": "text", "text": "(the script has no more replies)"}], "end_turn")
        step = replies[turn]
        content: list[dict[str, Any]] = []
        if step.get("text"):
            content.append({"type": "text", "text": _fill(step["text"], fields)})
        for index, use in enumerate(step.get("tool_use", [])):
            tool_input = _fill(dict(use.get("input", {})), fields)
            tool_input["rationale"] = _fill(use.get("rationale", "scripted step"), fields)
            tool_input["confidence"] = use.get("confidence", 0.9)
            content.append(
                {"type": "tool_use", "id": f"toolu_script_{turn}_{index}", "name": use["name"], "input": tool_input}
            )
        stop = "tool_use" if any(block["type"] == "tool_use" for block in content) else "end_turn"
        return _reply(request, content, stop)


def _reply(request: ModelRequest, content: list[dict[str, Any]], stop_reason: str) -> ModelReply:
    words = sum(len(str(message["content"])) for message in request.messages) // 4
    return ModelReply(
        content=content,
        stop_reason=stop_reason,
        model=SCRIPTED,  # named as what it is (not the model it stands in for), and priced at 0
        usage=Usage(input_tokens=words + len(request.system) // 4, output_tokens=20 * len(content)),
    )


def _request_text(request: ModelRequest) -> str:
    first = request.messages[0]["content"] if request.messages else ""
    if isinstance(first, list):
        return " ".join(block.get("text", "") for block in first if isinstance(block, dict))
    return str(first)


def _fields(pattern: str | None, text: str) -> dict[str, str]:
    fields = {"request": text}
    if pattern:
        found = re.search(pattern, text)
        if found:
            fields.update({key: value for key, value in found.groupdict().items() if value is not None})
    return fields


def _fill(value: Any, fields: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format_map(_Keep(fields))
    if isinstance(value, dict):
        return {key: _fill(item, fields) for key, item in value.items()}
    if isinstance(value, list):
        return [_fill(item, fields) for item in value]
    return value


class _Keep(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"
