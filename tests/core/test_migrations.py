from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from core.models import Base

# Tables the test suite creates for its own sample tools, not part of the schema.
TEST_ONLY_TABLES = {"sample_effects", "replica_calls"}


def _ours(name: str | None, kind: str, _parent: Any) -> bool:
    return not (kind == "table" and name in TEST_ONLY_TABLES)


def test_migrations_build_exactly_the_models_schema(engine) -> None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True, "include_name": _ours})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []
