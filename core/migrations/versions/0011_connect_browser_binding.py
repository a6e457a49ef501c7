"""connect states bound to the browser that confirmed them

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 10:00:00

A person's connect link is tied to the one browser that confirmed it on countersign's page:
the sha256 of a random nonce that browser keeps in a cookie. The callback refuses any other
browser, so a link planted in a colleague's browser connects nothing. Links issued before this
migration have none, so their callbacks are refused until they are confirmed again.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('connect_states', schema=None) as batch_op:
        batch_op.add_column(sa.Column('browser_hash', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('connect_states', schema=None) as batch_op:
        batch_op.drop_column('browser_hash')
