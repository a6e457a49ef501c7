"""the audit ledger is append-only on SQLite too

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 10:00:00.000000

PostgreSQL has refused UPDATE, DELETE and TRUNCATE on `audit_events` since 0001. SQLite had
no such guard, so a stray statement (or anyone with the file and the `sqlite3` shell) could
drop the newest events and `audit verify` still passed. These triggers make the database
refuse both, with the same message as PostgreSQL's. They stop mistakes and casual edits, not
someone who drops them first: published heads are what catch that.

SQLite drops a table's triggers with the table, and Alembic's batch mode rebuilds a table to
alter it: a later migration that batch-alters `audit_events` must create these again
(tests/approvals/test_ledger.py checks that the database at head refuses both).
"""

from collections.abc import Sequence

from alembic import op


revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPERATIONS = ("UPDATE", "DELETE")


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return  # PostgreSQL has its own triggers (0001)
    for operation in OPERATIONS:
        op.execute(
            f"CREATE TRIGGER audit_events_no_{operation.lower()} BEFORE {operation} ON audit_events "
            f"BEGIN SELECT RAISE(ABORT, 'audit_events is append-only ({operation} refused)'); END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for operation in OPERATIONS:
        op.execute(f"DROP TRIGGER IF EXISTS audit_events_no_{operation.lower()}")
