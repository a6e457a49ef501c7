"""Modals: the reason for a reject or a veto, and the edit form generated from a tool's parameter schema."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from bot import action_ids
from bot.blocks.kit import Block, context, option, plain
from bot.blocks.text import escape, truncate
from core.numbers import NotAPlainNumber, NumberOutOfBounds, NumberRefused, json_loads, plain_decimal

TITLE_LIMIT = 24
METADATA_LIMIT = 3000
INPUT_LIMIT = 3000  # the most a plain_text_input holds
REASON_LIMIT = 2000
MAX_FIELDS = 99  # a modal holds 100 blocks; one explains the form
MAX_OPTIONS = 100
OPTION_VALUE_LIMIT = 150
ABOUT = "_about"  # the explaining block; a pydantic field cannot start with "_", so it never clashes
REASON = "reason"
NEXT = "next"  # "did not run": leave it, or run it again
LEAVE, RUN_AGAIN = "leave", "run_again"
_MISSING = object()


def reject_modal(action_public_id: str, params_hash: str, private_metadata: str) -> Block:
    """Asks for the reason of a reject (required): the agent gets it word for word."""
    hint = "The agent gets this word for word, and it stays on the record."
    return _reason_modal(
        action_ids.REJECT_MODAL, "Reject action", "Reject", action_public_id, params_hash, private_metadata, False, hint
    )


def veto_modal(action_public_id: str, params_hash: str, private_metadata: str) -> Block:
    """Asks for the reason of a veto (optional); the action will not run."""
    hint = "Optional. The agent gets it, and it stays on the record."
    return _reason_modal(
        action_ids.VETO_MODAL, "Veto action", "Veto", action_public_id, params_hash, private_metadata, True, hint
    )


def resolve_modal(action_public_id: str, params_hash: str, ran: bool, quorum: int, metadata: str) -> Block:
    """Asks for an optional note on "it ran" / "it did not run"; the second offers to run it again."""
    said = "it ran" if ran else "it did not run"
    about = context(
        ABOUT,
        f"You say {said}. Action `{escape(action_public_id)}` · params `{escape(params_hash[:12])}`",
    )
    element: Block = {"type": "plain_text_input", "action_id": REASON, "multiline": True, "max_length": REASON_LIMIT}
    note: Block = {
        "type": "input",
        "block_id": REASON,
        "label": plain("Note"),
        "hint": plain("Optional: how you checked. The agent gets it, and it stays on the record."),
        "element": element,
        "optional": True,
    }
    blocks = [about, note]
    if not ran:
        needs = f" ({quorum} approvers must ask)" if quorum > 1 else ""
        leave = option("Leave it: tell the agent it did not run", LEAVE)
        again = option(f"Run it again: counts as an approval{needs}", RUN_AGAIN)
        blocks.append(
            {
                "type": "input",
                "block_id": NEXT,
                "label": plain("Then"),
                "element": {
                    "type": "radio_buttons",
                    "action_id": NEXT,
                    "options": [leave, again],
                    "initial_option": leave,
                },
            }
        )
    title = "It ran" if ran else "It did not run"
    return _modal(action_ids.RESOLVE_MODAL, title, "Save", blocks, metadata)


def _reason_modal(
    callback_id: str,
    title: str,
    submit: str,
    action_public_id: str,
    params_hash: str,
    metadata: str,
    optional: bool,
    hint: str,
) -> Block:
    about = context(ABOUT, f"Action `{escape(action_public_id)}` · params `{escape(params_hash[:12])}`")
    element: Block = {"type": "plain_text_input", "action_id": REASON, "multiline": True, "max_length": REASON_LIMIT}
    reason: Block = {
        "type": "input",
        "block_id": REASON,
        "label": plain("Reason"),
        "hint": plain(hint),
        "element": element,
        "optional": optional,
    }
    return _modal(callback_id, title, submit, [about, reason], metadata)


def _modal(callback_id: str, title: str, submit: str, blocks: list[Block], metadata: str) -> Block:
    if len(metadata) > METADATA_LIMIT:
        raise ValueError(f"private_metadata is {len(metadata)} characters; Slack allows {METADATA_LIMIT}")
    return {
        "type": "modal",
        "callback_id": callback_id,
        "title": plain(title, TITLE_LIMIT),
        "submit": plain(submit, TITLE_LIMIT),
        "close": plain("Cancel", TITLE_LIMIT),
        "private_metadata": metadata,
        "blocks": blocks,
    }


@dataclass(frozen=True)
class _Field:
    name: str
    kind: str  # text | int | number | bool | enum | json
    prop: dict[str, Any]
    required: bool
    nullable: bool
    options: tuple[Any, ...] = ()


def _fields(schema: dict[str, Any]) -> list[_Field]:
    required = set(schema.get("required", ()))
    return [_field(schema, name, prop, name in required) for name, prop in schema.get("properties", {}).items()]


def _resolve(schema: dict[str, Any], prop: dict[str, Any]) -> dict[str, Any]:
    """`prop` with a local `$ref` (pydantic's `#/$defs/…`) or a single `allOf` merged in."""
    for _ in range(10):  # refs may chain; never loop forever
        if "$ref" in prop:
            target = schema.get("$defs", {}).get(str(prop["$ref"]).rsplit("/", 1)[-1], {})
            prop = {**target, **{k: v for k, v in prop.items() if k != "$ref"}}
        elif isinstance(prop.get("allOf"), list) and len(prop["allOf"]) == 1:
            prop = {**prop["allOf"][0], **{k: v for k, v in prop.items() if k != "allOf"}}
        else:
            break
    return prop


def _field(schema: dict[str, Any], name: str, prop: dict[str, Any], required: bool) -> _Field:
    prop = _resolve(schema, prop)
    nullable = False
    variants = prop.get("anyOf") or prop.get("oneOf")
    if isinstance(variants, list):
        resolved = [_resolve(schema, v) for v in variants]
        others = [v for v in resolved if v.get("type") != "null"]
        nullable = len(others) < len(resolved)
        if len(others) != 1:
            return _Field(name, "json", prop, required, nullable)
        prop = {**{k: v for k, v in prop.items() if k not in ("anyOf", "oneOf")}, **others[0]}
    kind = prop.get("type")
    if isinstance(kind, list):
        nullable = nullable or "null" in kind
        rest = [k for k in kind if k != "null"]
        kind = rest[0] if len(rest) == 1 else None
    values = [prop["const"]] if "const" in prop else prop.get("enum")
    if isinstance(values, list):
        nullable = nullable or None in values
        options = tuple(v for v in values if v is not None)
        if 0 < len(options) <= MAX_OPTIONS and all(_option_fits(v) for v in options):
            return _Field(name, "enum", prop, required, nullable, options)
    kinds = {"string": "text", "integer": "int", "number": "number", "boolean": "bool"}
    return _Field(name, kinds.get(str(kind), "json"), prop, required, nullable)


def _option_fits(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) and len(json.dumps(value)) <= OPTION_VALUE_LIMIT


def edit_modal(
    action_public_id: str, tool: str, schema: dict[str, Any], params: dict[str, Any], private_metadata: str
) -> Block:
    """A form with one input per parameter of the tool, pre-filled with the drafted values."""
    fields = _fields(schema)
    if len(fields) > MAX_FIELDS:
        raise ValueError(f"{tool!r} has {len(fields)} parameters; a modal holds at most {MAX_FIELDS} inputs")
    intro = (
        f"`{escape(tool)}` · action `{escape(action_public_id)}`."
        " Submitting approves it with your changes, on the record."
    )
    blocks = [context(ABOUT, intro)]
    if not fields:
        blocks.append(context("_empty", "This tool takes no parameters; there is nothing to edit."))
    for field in fields:
        current = params.get(field.name, field.prop.get("default", _MISSING))
        blocks.append(_input(field, current))
    return _modal(action_ids.EDIT_MODAL, "Edit and approve", "Approve edits", blocks, private_metadata)


def _input(field: _Field, current: Any) -> Block:
    element: Block = {"type": "plain_text_input", "action_id": field.name}
    if field.kind == "text":
        if isinstance(current, str) and current:
            element["initial_value"] = current
            element["multiline"] = "\n" in current or len(current) > 80
        max_length = field.prop.get("maxLength")
        if isinstance(max_length, int) and 0 < max_length <= INPUT_LIMIT:
            element["max_length"] = max_length
    elif field.kind in ("int", "number"):
        element = {"type": "number_input", "action_id": field.name, "is_decimal_allowed": field.kind == "number"}
        if _is_number(current) and (field.kind == "number" or isinstance(current, int)):
            element["initial_value"] = _number_text(current)
        for key, slack_key in (("minimum", "min_value"), ("maximum", "max_value")):
            if _is_number(field.prop.get(key)):
                element[slack_key] = _number_text(field.prop[key])
    elif field.kind in ("bool", "enum"):
        values = (True, False) if field.kind == "bool" else field.options
        options = [option(v if isinstance(v, str) else json.dumps(v), json.dumps(v)) for v in values]
        element = {"type": "static_select", "action_id": field.name, "options": options}
        chosen = [o for v, o in zip(values, options, strict=True) if _same(v, current)]
        if chosen:
            element["initial_option"] = chosen[0]
    else:  # anything else is edited as JSON
        element["multiline"] = True
        if current is not _MISSING and current is not None:
            element["initial_value"] = json.dumps(current, indent=2, ensure_ascii=False, default=str)
    if len(element.get("initial_value", "")) > INPUT_LIMIT:
        size = len(element["initial_value"])
        return context(field.name, f"`{escape(field.name)}` is too long to edit here ({size:,} characters); it stays.")
    block: Block = {
        "type": "input",
        "block_id": field.name,
        "label": plain(str(field.prop.get("title") or field.name), 2000),
    }
    if isinstance(field.prop.get("description"), str) and field.prop["description"]:
        block["hint"] = plain(field.prop["description"], 2000)
    block["element"] = element
    if not field.required:
        block["optional"] = True
    return block


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _number_text(value: int | float) -> str:
    return str(value) if isinstance(value, int) else format(Decimal(repr(value)), "f")


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def parse_edit(schema: dict[str, Any], state_values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The params a `view_submission` carries (`view.state.values`), and an error message per block_id.

    Only fields present in the form are returned (one too long to edit is left out): merge the result
    over the drafted params, then validate with the tool's own schema too.
    """
    params: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for field in _fields(schema):
        entry = state_values.get(field.name)
        if not isinstance(entry, dict) or not entry:
            continue
        raw = _raw_value(next(iter(entry.values())))
        if raw is None or (field.kind != "text" and not raw.strip()):
            if field.nullable:
                params[field.name] = None
            elif field.kind == "text":
                params[field.name] = ""
            elif "default" in field.prop:
                params[field.name] = field.prop["default"]
            elif field.required:
                errors[field.name] = "This field is required."
            continue
        try:
            params[field.name] = _convert(field, raw)
        except ValueError as exc:
            errors[field.name] = truncate(str(exc), 150)
    return params, errors


def _raw_value(payload: Any) -> str | None:
    if not isinstance(payload, dict):
        return None
    if "selected_option" in payload:
        selected = payload["selected_option"]
        return str(selected["value"]) if isinstance(selected, dict) and "value" in selected else None
    value = payload.get("value")
    return value if isinstance(value, str) else None


def _convert(field: _Field, raw: str) -> Any:
    if field.kind == "text":
        return raw
    if field.kind in ("int", "number"):
        try:
            number = plain_decimal(raw.strip())
        except NotAPlainNumber:
            raise ValueError(
                "Enter a whole number, like 42." if field.kind == "int" else "Enter a number, like 2.5."
            ) from None
        except NumberOutOfBounds as exc:
            raise ValueError(f"{field.name}: {exc.problem}.") from None
        if field.kind == "int":
            if number != number.to_integral_value():
                raise ValueError("Enter a whole number, like 42.")
            return int(number)  # exact: the bounds above keep it short
        return float(number)
    if field.kind in ("bool", "enum"):
        try:
            value = json_loads(raw)
        except (ValueError, RecursionError):
            value = _MISSING
        values = (True, False) if field.kind == "bool" else field.options
        if not any(_same(value, v) for v in values):
            raise ValueError("Choose one of the options.")
        return value
    return _json_value(field.name, raw)


def _json_value(name: str, raw: str) -> Any:
    """A JSON field's value, within the size of a Slack text input and with its numbers bounded
    like the number fields' (so a huge exponent cannot freeze the server later, and NaN and
    infinities, which no params hash can sign, are refused here)."""
    if len(raw) > INPUT_LIMIT:
        raise ValueError(f"{name}: at most {INPUT_LIMIT:,} characters (this has {len(raw):,}).")
    try:
        return json_loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"Not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}).") from None
    except NumberRefused as exc:
        raise ValueError(f"{name}: a number in it is refused: {exc.problem}.") from None
    except RecursionError:
        raise ValueError(f"{name}: nested too deeply.") from None
