"""the actions API: API clients, external actions, webhook deliveries

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 14:20:00.000000

`api_clients` holds each client of the actions API (a sha256 of its token, its webhook secret
sealed by the vault, the task types it may ask for). An action asked for through the API
names its client, the client's own id for it (unique per client) and its callback URL.
`webhook_deliveries` queues its state changes for the callback, written in the transaction
of each change.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0014'
down_revision: str | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'api_clients',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('webhook_secret', sa.Text(), nullable=True),
        sa.Column('task_types', sa.JSON(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('name'),
        sa.UniqueConstraint('token_hash'),
    )
    with op.batch_alter_table('actions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('api_client_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('external_id', sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column('callback_url', sa.Text(), nullable=True))
        batch_op.create_index(batch_op.f('ix_actions_api_client_id'), ['api_client_id'], unique=False)
        batch_op.create_unique_constraint('uq_actions_client_external_id', ['api_client_id', 'external_id'])
        batch_op.create_foreign_key('fk_actions_api_client_id', 'api_clients', ['api_client_id'], ['id'])
    op.create_table(
        'webhook_deliveries',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('delivery_id', sa.String(length=40), nullable=False),
        sa.Column('action_id', sa.Integer(), nullable=False),
        sa.Column('url', sa.Text(), nullable=False),
        sa.Column('payload', sa.JSON(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('available_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(['action_id'], ['actions.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('delivery_id'),
    )
    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_webhook_deliveries_action_id'), ['action_id'], unique=False)
        batch_op.create_index('ix_webhook_deliveries_undelivered', ['delivered_at', 'available_at'], unique=False)


def downgrade() -> None:
    op.drop_table('webhook_deliveries')
    with op.batch_alter_table('actions', schema=None) as batch_op:
        batch_op.drop_constraint('fk_actions_api_client_id', type_='foreignkey')
        batch_op.drop_constraint('uq_actions_client_external_id', type_='unique')
        batch_op.drop_index(batch_op.f('ix_actions_api_client_id'))
        batch_op.drop_column('callback_url')
        batch_op.drop_column('external_id')
        batch_op.drop_column('api_client_id')
    op.drop_table('api_clients')
