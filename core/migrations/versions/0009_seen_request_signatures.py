"""seen request signatures

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 02:40:00.000000

Signed Slack requests already taken, by a hash of their signature, so that the same bytes
sent again within Slack's five-minute window are refused (a replay) on every replica.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('seen_request_signatures',
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('request_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('digest')
    )
    with op.batch_alter_table('seen_request_signatures', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_seen_request_signatures_request_at'), ['request_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('seen_request_signatures', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_seen_request_signatures_request_at'))

    op.drop_table('seen_request_signatures')
