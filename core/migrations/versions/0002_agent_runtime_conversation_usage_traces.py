"""agent runtime: conversation, usage, traces

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 15:14:15.318140
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "trace_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("task_type", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("model", sa.String(length=64), nullable=True),
        sa.Column("input_tokens", sa.Integer(), nullable=False),
        sa.Column("output_tokens", sa.Integer(), nullable=False),
        sa.Column("cache_read_tokens", sa.Integer(), nullable=False),
        sa.Column("cache_creation_tokens", sa.Integer(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["tasks.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("trace_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_trace_events_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_trace_events_task_id"), ["task_id"], unique=False)

    with op.batch_alter_table("actions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("turn", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("tool_use_id", sa.String(length=64), nullable=True))

    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("channel", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("messages", sa.JSON(), nullable=False, server_default="[]"))
        batch_op.add_column(sa.Column("turn", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("steps", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("input_tokens", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("output_tokens", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("cost_usd", sa.Float(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("budget_extensions", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("next_step_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("lease_owner", sa.String(length=96), nullable=True))
        batch_op.add_column(sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("model_failures", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("unavailable_since", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("paused_reason", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("final_text", sa.Text(), nullable=True))
        batch_op.drop_index(batch_op.f("ix_tasks_state"))
        batch_op.create_index("ix_tasks_state_next_step_at", ["state", "next_step_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_tasks_state_next_step_at")
        batch_op.create_index(batch_op.f("ix_tasks_state"), ["state"], unique=False)
        batch_op.drop_column("final_text")
        batch_op.drop_column("paused_reason")
        batch_op.drop_column("unavailable_since")
        batch_op.drop_column("model_failures")
        batch_op.drop_column("lease_until")
        batch_op.drop_column("lease_owner")
        batch_op.drop_column("next_step_at")
        batch_op.drop_column("budget_extensions")
        batch_op.drop_column("cost_usd")
        batch_op.drop_column("output_tokens")
        batch_op.drop_column("input_tokens")
        batch_op.drop_column("steps")
        batch_op.drop_column("turn")
        batch_op.drop_column("messages")
        batch_op.drop_column("channel")

    with op.batch_alter_table("actions", schema=None) as batch_op:
        batch_op.drop_column("tool_use_id")
        batch_op.drop_column("turn")

    with op.batch_alter_table("trace_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_trace_events_task_id"))
        batch_op.drop_index(batch_op.f("ix_trace_events_at"))

    op.drop_table("trace_events")
