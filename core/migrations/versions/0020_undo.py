"""undo: a compensating action names the action it undoes

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-10 10:00:00.000000

`actions.undo_of` links the compensating action an Undo click drafts (its tool is the original
tool's declared `undo`) to the action it compensates. It is unique: one compensation per
original, however many people click Undo at once.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0020'
down_revision: str | None = '0019'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('actions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('undo_of', sa.Integer(), nullable=True))
        batch_op.create_unique_constraint('uq_actions_undo_of', ['undo_of'])
        batch_op.create_foreign_key('fk_actions_undo_of', 'actions', ['undo_of'], ['id'])


def downgrade() -> None:
    with op.batch_alter_table('actions', schema=None) as batch_op:
        batch_op.drop_constraint('fk_actions_undo_of', type_='foreignkey')
        batch_op.drop_constraint('uq_actions_undo_of', type_='unique')
        batch_op.drop_column('undo_of')
