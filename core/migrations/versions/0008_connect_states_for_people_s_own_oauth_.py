"""connect states for people's own OAuth sign-in

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23 18:07:42.748745

A person's link to connect their own credential from Slack: a hash of its OAuth `state`,
bound to the person, workspace, provider and secret; expiring and single-use.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('connect_states',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('state_hash', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.String(length=32), nullable=False),
    sa.Column('team_id', sa.String(length=32), nullable=True),
    sa.Column('provider', sa.String(length=64), nullable=False),
    sa.Column('secret_name', sa.String(length=128), nullable=False),
    sa.Column('tool', sa.String(length=128), nullable=False),
    sa.Column('action_id', sa.String(length=40), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('state_hash')
    )
    with op.batch_alter_table('connect_states', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_connect_states_expires_at'), ['expires_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('connect_states', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_connect_states_expires_at'))

    op.drop_table('connect_states')
