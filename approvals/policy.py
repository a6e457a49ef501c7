"""Which mode a drafted action runs in: the task type's level, capped by the tool and by
the model's confidence. Caps only ever lower the level; nothing in a prompt raises it."""

from __future__ import annotations

from dataclasses import dataclass

from approvals.ports import ToolPolicy
from core.config import AutonomyLevel, lowest


@dataclass(frozen=True)
class Routing:
    mode: AutonomyLevel
    reasons: tuple[str, ...]  # why the mode is below the task type's level, for the card
    low_confidence: bool


def route(
    level: AutonomyLevel,
    tool: ToolPolicy,
    confidence: float,
    threshold: float,
    *,
    credentials: str | None = None,
    fallback_model: str | None = None,
) -> Routing:
    """`fallback_model`: the draft came from this fallback while the primary model failed; its
    drafts have earned nothing, so a person decides."""
    caps: list[tuple[AutonomyLevel, str]] = [
        (AutonomyLevel(tool.max_autonomy), f"tool allows at most {tool.max_autonomy}")
    ]
    if credentials == "approver" and tool.secrets:
        # Without an approval there is nobody whose credential it could run with.
        caps.append((AutonomyLevel.HITL, "runs with the approver's own credential"))
    if tool.risk == "high":
        caps.append((AutonomyLevel.HITL, "high-risk tool"))
    if not tool.idempotent:
        # A non-idempotent tool cannot be retried blindly, so a person gets to stop it first.
        caps.append((AutonomyLevel.HOTL, "tool is not idempotent"))
    if fallback_model is not None:
        caps.append((AutonomyLevel.HITL, f"drafted by the fallback model {fallback_model} while the primary failed"))
    low_confidence = confidence < threshold
    if low_confidence:
        caps.append((AutonomyLevel.HITL, f"confidence {confidence:.2f} below {threshold:.2f}"))
    mode = lowest(level, *(cap for cap, _ in caps))
    reasons = tuple(reason for cap, reason in caps if cap == mode and mode != level)
    return Routing(mode=mode, reasons=reasons, low_confidence=low_confidence)
