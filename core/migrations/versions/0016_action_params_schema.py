"""actions of open tools carry their params schema

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 15:30:00.000000

A task type with `open_tools` takes tools its API clients bring (mcp-gate, the Claude Code
hook); the schema a client sent with such an action checks its params and any edit.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0016'
down_revision: str | None = '0015'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('actions', sa.Column('params_schema', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('actions', schema=None) as batch_op:
        batch_op.drop_column('params_schema')
