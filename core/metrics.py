"""Prometheus metrics: counters and histograms the code updates as things happen, and a
collector that reads current totals (pending actions, outbox backlog, autonomy levels) from
the database at scrape time, so gauges never drift from the truth.

Names follow Prometheus conventions (`countersign_` prefix, `_total` counters, base units);
labels are bounded by the configuration (task types, tools, models), never ids.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from core.clock import utc
from core.models import Action, AutonomyState, OutboxMessage, UnchainedAuditEvent
from core.states import OPEN_FOR_DECISION

LEVELS = {"hitl": 0, "hotl": 1, "auto": 2}

DECISIONS = Counter(
    "countersign_decisions_total", "People's decisions on actions, refusals included", ["task_type", "decision"]
)
TIME_TO_DECISION = Histogram(
    "countersign_time_to_decision_seconds",
    "From draft to approval or rejection",
    ["task_type"],
    buckets=(5, 30, 60, 300, 900, 1800, 3600, 4 * 3600, 24 * 3600),
)
CLICKS_SHED = Counter(
    "countersign_clicks_shed_total",
    "Clicks acked without deciding (the clicker is told to click again): the decision could not start "
    "within its time budget (late) or got no turn within it (busy)",
    ["kind", "reason"],
)
AUDIT_CHAIN_BATCH = Histogram(
    "countersign_audit_chain_batch_seconds",
    "How long one chain batch held the chain lock (lock to commit)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
AUDIT_CHAINED = Counter("countersign_audit_chained_total", "Audit events linked into the ledger by the chainer")
EXECUTIONS = Counter("countersign_executions_total", "Tool runs by outcome", ["tool", "outcome"])
TOKEN_REFRESHES = Counter(
    "countersign_token_refreshes_total", "Delegated OAuth tokens refreshed before a tool run", ["provider", "outcome"]
)
ESCALATION_STEPS = Counter(
    "countersign_escalation_steps_total", "Escalation steps fired", ["task_type", "step", "late"]
)
TIMER_LATENESS = Histogram(
    "countersign_timer_lateness_seconds", "How late a due timer fired", buckets=(0.1, 0.5, 1, 1.5, 2, 5, 10, 60, 600)
)
SLACK_API_ERRORS = Counter(
    "countersign_slack_api_errors_total", "Slack Web API calls that failed, by method", ["method", "error"]
)
OUTBOX_DELIVERED = Counter(
    "countersign_outbox_delivered_total", "Outbox messages delivered (or given up)", ["kind", "result"]
)
MODEL_CALLS = Counter("countersign_model_calls_total", "Model calls by outcome", ["task_type", "model", "outcome"])
MODEL_TOKENS = Counter(
    "countersign_model_tokens_total",
    "Model tokens by kind: input (uncached prompt), cache_read, cache_write, output",
    ["task_type", "model", "direction"],
)
MODEL_COST = Counter("countersign_model_cost_usd_total", "Model cost in USD", ["task_type", "model"])
BUDGET_STOPS = Counter("countersign_budget_stops_total", "Tasks paused by a budget or a loop", ["task_type", "kind"])


class DatabaseCollector(Collector):
    """Gauges read from the database at scrape time."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def collect(self) -> Iterator[GaugeMetricFamily]:
        pending = GaugeMetricFamily(
            "countersign_pending_actions", "Actions waiting for a person or a veto window", labels=["task_type", "mode"]
        )
        backlog = GaugeMetricFamily("countersign_outbox_backlog", "Undelivered outbox messages")
        oldest = GaugeMetricFamily("countersign_outbox_oldest_age_seconds", "Age of the oldest undelivered message")
        unchained = GaugeMetricFamily("countersign_audit_unchained", "Audit events committed but not yet chained")
        unchained_age = GaugeMetricFamily(
            "countersign_audit_unchained_oldest_age_seconds", "Age of the oldest audit event not yet chained"
        )
        levels = GaugeMetricFamily(
            "countersign_autonomy_level", "Autonomy level (0 hitl, 1 hotl, 2 auto)", labels=["task_type"]
        )
        with self.sessions() as session:
            rows = session.execute(
                select(Action.task_type, Action.mode, func.count())
                .where(Action.state.in_(OPEN_FOR_DECISION))
                .group_by(Action.task_type, Action.mode)
            ).all()
            for task_type, mode, count in rows:
                pending.add_metric([task_type, mode], count)
            count, first = session.execute(
                select(func.count(), func.min(OutboxMessage.created_at)).where(OutboxMessage.delivered_at.is_(None))
            ).one()
            backlog.add_metric([], count)
            age = (datetime.now(UTC) - utc(first)).total_seconds() if first else 0.0
            oldest.add_metric([], max(age, 0.0))
            count, first = session.execute(select(func.count(), func.min(UnchainedAuditEvent.at))).one()
            unchained.add_metric([], count)
            unchained_age.add_metric([], max((datetime.now(UTC) - utc(first)).total_seconds(), 0.0) if first else 0.0)
            for task_type, level in session.execute(select(AutonomyState.task_type, AutonomyState.level)):
                levels.add_metric([task_type], LEVELS.get(level, 0))
        yield from (pending, backlog, oldest, unchained, unchained_age, levels)
