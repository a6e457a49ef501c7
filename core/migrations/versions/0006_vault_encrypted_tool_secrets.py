"""vault: encrypted tool secrets

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 16:23:11.641100
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('secrets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('scope', sa.String(length=128), nullable=False),
    sa.Column('owner', sa.String(length=32), nullable=False),
    sa.Column('team_id', sa.String(length=32), nullable=True),
    sa.Column('ciphertext', sa.Text(), nullable=False),
    sa.Column('key_id', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('rotated_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name', 'scope', 'owner', 'team_id', name='uq_secrets_identity')
    )
    with op.batch_alter_table('secrets', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_secrets_key_id'), ['key_id'], unique=False)
        batch_op.create_index('uq_secrets_identity_no_team', ['name', 'scope', 'owner'], unique=True, postgresql_where=sa.text('team_id IS NULL'), sqlite_where=sa.text('team_id IS NULL'))



def downgrade() -> None:
    with op.batch_alter_table('secrets', schema=None) as batch_op:
        batch_op.drop_index('uq_secrets_identity_no_team', postgresql_where=sa.text('team_id IS NULL'), sqlite_where=sa.text('team_id IS NULL'))
        batch_op.drop_index(batch_op.f('ix_secrets_key_id'))

    op.drop_table('secrets')
