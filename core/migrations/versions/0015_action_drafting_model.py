"""actions remember which model drafted them, and whether it was the fallback

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 14:40:00.000000

A draft by the fallback model always needs a person and is no graduation evidence for its
task type (`approvals.autonomy`); its card and the trace name the model.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0015'
down_revision: str | None = '0014'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('actions', sa.Column('model', sa.String(length=64), nullable=True))
    op.add_column('actions', sa.Column('fallback', sa.Boolean(), server_default='0', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('actions', schema=None) as batch_op:
        batch_op.drop_column('fallback')
        batch_op.drop_column('model')
