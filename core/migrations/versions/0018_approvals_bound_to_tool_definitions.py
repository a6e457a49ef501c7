"""approvals are bound to the tool's definition as well as its params

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-08 10:00:00.000000

`actions.tool_hash` is the sha256 of the tool's name, parameter schema and description the
action waits for approval under (`core.canonical.tool_hash`); `actions.tool_changed_at` says
when a start found that definition changed since the draft. Every decision records the
definition it was made on (`decisions.tool_hash`), and a person's approval counts once per
params hash and definition: after a change they may approve again. Rows from before hold ''
(no definition recorded: never re-asked).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0018'
down_revision: str | None = '0017'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('actions', sa.Column('tool_hash', sa.String(length=64), server_default='', nullable=False))
    op.add_column('actions', sa.Column('tool_changed_at', sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table('decisions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('tool_hash', sa.String(length=64), server_default='', nullable=False))
        batch_op.drop_constraint('uq_decisions_once', type_='unique')
        batch_op.create_unique_constraint(
            'uq_decisions_once', ['action_id', 'kind', 'actor', 'params_hash', 'tool_hash']
        )


def downgrade() -> None:
    with op.batch_alter_table('decisions', schema=None) as batch_op:
        batch_op.drop_constraint('uq_decisions_once', type_='unique')
        batch_op.create_unique_constraint('uq_decisions_once', ['action_id', 'kind', 'actor', 'params_hash'])
        batch_op.drop_column('tool_hash')
    with op.batch_alter_table('actions', schema=None) as batch_op:
        batch_op.drop_column('tool_changed_at')
        batch_op.drop_column('tool_hash')
