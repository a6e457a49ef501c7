"""HumanLayer's wire API: its calls, questions asked in Slack, actions that take no edit

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-09 10:00:00.000000

`humanlayer_calls` keeps each function call and contact request a HumanLayer SDK sent to
`/humanlayer/v1` (the client's `call_id`, unique per client and kind, its `run_id` and `spec`
as sent) and the action or question made of it. `questions` holds a question posted in Slack
and its answer, word for word. `actions.editable` is false for an action whose client runs
the params it asked for whatever an approver edits (the HumanLayer SDK): it takes no edit.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0017'
down_revision: str | None = '0016'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('actions', sa.Column('editable', sa.Boolean(), server_default='1', nullable=False))
    op.create_table(
        'questions',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('public_id', sa.String(length=32), nullable=False),
        sa.Column('task_type', sa.String(length=64), nullable=False),
        sa.Column('api_client_id', sa.Integer(), nullable=False),
        sa.Column('subject', sa.Text(), nullable=True),
        sa.Column('text', sa.Text(), nullable=False),
        sa.Column('channel', sa.String(length=32), nullable=False),
        sa.Column('thread_ts', sa.String(length=32), nullable=True),
        sa.Column('approvers', sa.JSON(), nullable=False),
        sa.Column('responders', sa.JSON(), nullable=True),
        sa.Column('options', sa.JSON(), nullable=True),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('answer', sa.Text(), nullable=True),
        sa.Column('option', sa.String(length=128), nullable=True),
        sa.Column('answered_by', sa.String(length=32), nullable=True),
        sa.Column('answered_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['api_client_id'], ['api_clients.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('public_id'),
    )
    with op.batch_alter_table('questions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_questions_api_client_id'), ['api_client_id'], unique=False)
    op.create_table(
        'humanlayer_calls',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('api_client_id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('call_id', sa.String(length=128), nullable=False),
        sa.Column('run_id', sa.String(length=128), nullable=False),
        sa.Column('spec', sa.JSON(), nullable=False),
        sa.Column('action_id', sa.Integer(), nullable=True),
        sa.Column('question_id', sa.Integer(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['action_id'], ['actions.id']),
        sa.ForeignKeyConstraint(['api_client_id'], ['api_clients.id']),
        sa.ForeignKeyConstraint(['question_id'], ['questions.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('action_id'),
        sa.UniqueConstraint('api_client_id', 'kind', 'call_id', name='uq_humanlayer_calls_client_call'),
        sa.UniqueConstraint('question_id'),
    )


def downgrade() -> None:
    op.drop_table('humanlayer_calls')
    with op.batch_alter_table('questions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_questions_api_client_id'))
    op.drop_table('questions')
    with op.batch_alter_table('actions', schema=None) as batch_op:
        batch_op.drop_column('editable')
