"""Canonical JSON and hashes: the byte form that params hashes and the audit chain sign."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, UTF-8 kept, no NaN: one text per value."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def params_hash(params: dict[str, Any]) -> str:
    """The hash an approval is bound to: sha256 of the canonical JSON of the params."""
    return sha256_hex(canonical_json(params))


def tool_hash(name: str, schema: dict[str, Any], description: str) -> str:
    """The hash of a tool's definition an approval is bound to besides its params: sha256 of the
    canonical JSON of its name, parameter schema and description (the text the model and the
    card read). A change to any of them while an action waits re-asks its approvers."""
    return sha256_hex(canonical_json({"name": name, "schema": schema, "description": description}))
