"""graduated autonomy: outcomes, evidence window, proposals

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 15:43:15.888110
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('proposals',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('public_id', sa.String(length=32), nullable=False),
    sa.Column('task_type', sa.String(length=64), nullable=False),
    sa.Column('from_level', sa.String(length=8), nullable=False),
    sa.Column('to_level', sa.String(length=8), nullable=False),
    sa.Column('state', sa.String(length=12), nullable=False),
    sa.Column('evidence', sa.JSON(), nullable=False),
    sa.Column('signatures', sa.JSON(), nullable=False),
    sa.Column('needed', sa.Integer(), nullable=False),
    sa.Column('decided_by', sa.String(length=32), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('public_id')
    )
    with op.batch_alter_table('proposals', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_proposals_task_type'), ['task_type'], unique=False)

    with op.batch_alter_table('actions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('outcome', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('outcome_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_actions_type_outcome', ['task_type', 'outcome_at'], unique=False)

    with op.batch_alter_table('autonomy_levels', schema=None) as batch_op:
        batch_op.add_column(sa.Column('start_level', sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column('cooldown_until', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('evidence_since', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('probation_left', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('fingerprint', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('unconfirmed', sa.Boolean(), server_default='0', nullable=False))



def downgrade() -> None:
    with op.batch_alter_table('autonomy_levels', schema=None) as batch_op:
        batch_op.drop_column('unconfirmed')
        batch_op.drop_column('fingerprint')
        batch_op.drop_column('probation_left')
        batch_op.drop_column('evidence_since')
        batch_op.drop_column('cooldown_until')
        batch_op.drop_column('start_level')

    with op.batch_alter_table('actions', schema=None) as batch_op:
        batch_op.drop_index('ix_actions_type_outcome')
        batch_op.drop_column('outcome_at')
        batch_op.drop_column('outcome')

    with op.batch_alter_table('proposals', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_proposals_task_type'))

    op.drop_table('proposals')
