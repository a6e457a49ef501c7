"""vault secret versions

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 02:50:00.000000

Every write of a secret's value raises `secrets.version` by one, and the ciphertext carries
it, so an older ciphertext written back over the row is refused. Existing rows start at 0,
which is what their (older) payloads count as: they open until next written.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('secrets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('version', sa.Integer(), server_default=sa.text('0'), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('secrets', schema=None) as batch_op:
        batch_op.drop_column('version')
