"""standing rules: "Approve, and allow similar"

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-09 10:00:00.000000

`standing_rules` holds each rule an admin made from a card: its workspace, task type, tool,
constraints on the tool's parameters, expiry, optional count limit and uses, and who revoked
it, when and why. `actions.standing_rule_id` names the rule that let an action run one level
more autonomously than its type (its receipt shows it; graduation counts it apart).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0019'
down_revision: str | None = '0018'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'standing_rules',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('public_id', sa.String(length=32), nullable=False),
        sa.Column('team_id', sa.String(length=32), nullable=True),
        sa.Column('task_type', sa.String(length=64), nullable=False),
        sa.Column('tool', sa.String(length=128), nullable=False),
        sa.Column('constraints', sa.JSON(), nullable=False),
        sa.Column('created_by', sa.String(length=32), nullable=False),
        sa.Column('created_from', sa.String(length=32), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('max_uses', sa.Integer(), nullable=True),
        sa.Column('uses', sa.Integer(), server_default='0', nullable=False),
        sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('revoked_by', sa.String(length=32), nullable=True),
        sa.Column('revoked_reason', sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('public_id'),
    )
    op.create_index('ix_standing_rules_type_tool', 'standing_rules', ['task_type', 'tool'], unique=False)
    with op.batch_alter_table('actions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('standing_rule_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            'fk_actions_standing_rule_id', 'standing_rules', ['standing_rule_id'], ['id']
        )


def downgrade() -> None:
    with op.batch_alter_table('actions', schema=None) as batch_op:
        batch_op.drop_constraint('fk_actions_standing_rule_id', type_='foreignkey')
        batch_op.drop_column('standing_rule_id')
    op.drop_index('ix_standing_rules_type_tool', table_name='standing_rules')
    op.drop_table('standing_rules')
