"""audit events are chained in batches, off the commit path

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 05:10:00.000000

A transaction that records audit events inserts them into `audit_unchained` (no lock, no
head read); the chainer links them into `audit_events` in batches and deletes them here in
the same transaction. `audit_events` itself is unchanged (append-only, hash-chained).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        'audit_unchained',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.Column(
            'xact',
            sa.BigInteger(),
            server_default=sa.text("(pg_current_xact_id()::text::bigint)") if postgres else None,
            nullable=True,
        ),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('kind', sa.String(length=48), nullable=False),
        sa.Column('actor', sa.String(length=32), nullable=False),
        sa.Column('task_public_id', sa.String(length=32), nullable=True),
        sa.Column('action_public_id', sa.String(length=32), nullable=True),
        sa.Column('task_type', sa.String(length=64), nullable=True),
        sa.Column('params_hash', sa.String(length=64), nullable=True),
        sa.Column('from_state', sa.String(length=16), nullable=True),
        sa.Column('to_state', sa.String(length=16), nullable=True),
        sa.Column('note', sa.Text(), nullable=True),
        sa.Column('data', sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
    )


def downgrade() -> None:
    op.drop_table('audit_unchained')
