"""Graduated autonomy's rules, as pure functions: outcomes in, verdicts out.

Promotion (one level at a time, proposed to admins, never automatic):
- `hitl → hotl`: at least `min_samples` decided actions over `min_days`, from `min_approvers`
  distinct people, Wilson 95% lower bound of the clean rate ≥ `target`, rejections ≤
  `max_reject_rate`, no incident.
- `hotl → auto`: at least `auto_min_samples` executions over `auto_min_days`, Wilson 95%
  upper bound of the veto rate ≤ `auto_max_veto_rate`, no incident.

Demotion (automatic and immediate), checked in this order on each new outcome:
an incident → `hitl` and promotions frozen; a veto, undo, failure or unknown outcome during
probation → one level down; 3 of the last 10 rejected, vetoed or undone → one level down; once
`demote_window` outcomes exist, a Wilson lower bound of the clean rate over them under
`demote_below` → one level down. An undone run (`UNDONE`) counts as a veto everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from core.config import AutonomyLevel, GraduationConfig

Z95 = 1.959963984540054
CLEAN, EDITED, REJECTED, VETOED = "clean", "edited", "rejected", "vetoed"
FAILED, EXPIRED, INCIDENT, RUBBER_STAMP = "failed", "expired", "incident", "rubber_stamp"
# Ran one level sooner because a standing rule allowed it, and nobody objected: counted apart
# (`Evidence.by_rule`), never as a person's clean approval nor in the demotion windows. A rule's
# run that was vetoed or failed is labelled so, and counts against the type like any other.
BY_RULE = "by_rule"
# Its call's outcome was unknown (a person resolved it, or has yet to): never clean, whatever followed.
UNKNOWN = "unknown"
# It ran, and a person undid it (its compensation succeeded, `approvals.undo`): counted like a veto.
UNDONE = "undone"
OUTCOMES = (CLEAN, EDITED, REJECTED, VETOED, FAILED, EXPIRED, INCIDENT, RUBBER_STAMP, UNKNOWN, UNDONE, BY_RULE)
# The decisions people make on an unknown outcome (`approvals.resolutions`): an action with one
# was unknown, and is labelled so whatever it ended in.
RAN, NOT_RUN, RUN_AGAIN = "resolve_ran", "resolve_not_run", "run_again"
RESOLVING_KINDS = (RAN, NOT_RUN, RUN_AGAIN)
LEVELS = (AutonomyLevel.HITL, AutonomyLevel.HOTL, AutonomyLevel.AUTO)


def wilson_lower(successes: int, n: int, z: float = Z95) -> float:
    """Wilson score interval's lower bound for a proportion; 0 for an empty sample."""
    if n <= 0:
        return 0.0
    p = successes / n
    centre = p + z * z / (2 * n)
    margin = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - margin) / (1 + z * z / n))


def wilson_upper(successes: int, n: int, z: float = Z95) -> float:
    """Wilson score interval's upper bound; 1 for an empty sample (nothing is known)."""
    if n <= 0:
        return 1.0
    return 1.0 - wilson_lower(n - successes, n, z)


@dataclass(frozen=True)
class Evidence:
    """What a task type did at its current level since its evidence last restarted."""

    outcomes: tuple[str, ...]  # oldest first
    approvers: int  # distinct people behind the decisions
    days: float  # from the first outcome to now
    by_rule: int = 0  # clean runs a standing rule let through: shown, never counted as samples

    @property
    def samples(self) -> int:
        return len(self.outcomes)

    def count(self, *kinds: str) -> int:
        return sum(1 for outcome in self.outcomes if outcome in kinds)


@dataclass(frozen=True)
class Verdict:
    target: AutonomyLevel | None  # the level a proposal would grant; None: not eligible
    unmet: tuple[str, ...]  # what is still missing, for people
    stats: dict[str, float]


def one_up(level: AutonomyLevel) -> AutonomyLevel | None:
    index = LEVELS.index(level)
    return LEVELS[index + 1] if index + 1 < len(LEVELS) else None


def one_down(level: AutonomyLevel) -> AutonomyLevel:
    return LEVELS[max(0, LEVELS.index(level) - 1)]


def promotion(level: AutonomyLevel, ceiling: AutonomyLevel, evidence: Evidence, rule: GraduationConfig) -> Verdict:
    target = one_up(level)
    n = evidence.samples
    clean, rejected, vetoed = evidence.count(CLEAN), evidence.count(REJECTED), evidence.count(VETOED, UNDONE)
    stats = {
        "samples": n,
        "clean": clean,
        "rejected": rejected,
        "vetoed": vetoed,
        "clean_lower_bound": round(wilson_lower(clean, n), 4),
        "veto_upper_bound": round(wilson_upper(vetoed, n), 4),
        "approvers": evidence.approvers,
        "days": round(evidence.days, 2),
        "incidents": evidence.count(INCIDENT),
        "by_rule": evidence.by_rule,
    }
    if target is None or target > ceiling:
        return Verdict(None, (f"already at its ceiling ({ceiling.value})",), stats)
    unmet: list[str] = []
    if evidence.count(INCIDENT):
        unmet.append("an incident in the window")
    if level == AutonomyLevel.HITL:
        if n < rule.min_samples:
            unmet.append(f"{n} of {rule.min_samples} decided actions")
        if evidence.days < rule.min_days:
            unmet.append(f"{evidence.days:.1f} of {rule.min_days} days")
        if evidence.approvers < rule.min_approvers:
            unmet.append(f"{evidence.approvers} of {rule.min_approvers} distinct approvers")
        if stats["clean_lower_bound"] < rule.target:
            unmet.append(f"clean-rate lower bound {stats['clean_lower_bound']:.2f} below {rule.target:.2f}")
        if n and rejected / n > rule.max_reject_rate:
            unmet.append(f"rejection rate {rejected / n:.2%} above {rule.max_reject_rate:.0%}")
    else:
        if n < rule.auto_min_samples:
            unmet.append(f"{n} of {rule.auto_min_samples} executions")
        if evidence.days < rule.auto_min_days:
            unmet.append(f"{evidence.days:.1f} of {rule.auto_min_days} days")
        if stats["veto_upper_bound"] > rule.auto_max_veto_rate:
            unmet.append(f"veto-rate upper bound {stats['veto_upper_bound']:.2f} above {rule.auto_max_veto_rate:.2f}")
    return Verdict(None if unmet else target, tuple(unmet), stats)


@dataclass(frozen=True)
class Demotion:
    to: AutonomyLevel
    reason: str
    freeze: bool = False


def demotion(
    level: AutonomyLevel, outcomes: Sequence[str], rule: GraduationConfig, *, in_probation: bool
) -> Demotion | None:
    """The demotion the newest outcome (last of `outcomes`, those at this level) calls for."""
    if not outcomes:
        return None
    latest = outcomes[-1]
    if latest == INCIDENT:
        return Demotion(AutonomyLevel.HITL, "an incident: someone reported a run as wrong", freeze=True)
    if level == AutonomyLevel.HITL:
        return None
    if in_probation and latest in (VETOED, UNDONE, FAILED, UNKNOWN):
        return Demotion(one_down(level), f"a {latest} run during probation")
    last_ten = outcomes[-10:]
    if sum(1 for outcome in last_ten if outcome in (REJECTED, VETOED, UNDONE)) >= 3:
        return Demotion(one_down(level), "3 of the last 10 rejected, vetoed or undone")
    if len(outcomes) >= rule.demote_window:
        window = outcomes[-rule.demote_window :]
        bound = wilson_lower(sum(1 for outcome in window if outcome == CLEAN), len(window))
        if bound < rule.demote_below:
            return Demotion(
                one_down(level),
                f"clean-rate lower bound {bound:.2f} over the last {rule.demote_window} below {rule.demote_below:.2f}",
            )
    return None
