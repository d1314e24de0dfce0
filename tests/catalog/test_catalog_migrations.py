"""The Alembic migrations: one line of history, and they build exactly the models' schema."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from psycopg import sql
from sqlalchemy import create_engine, inspect

from serving.catalog import migrate
from serving.catalog.db import Base
from skiff.native.context import Context
from skiff.services import postgres


@pytest.mark.unit
def test_the_migrations_have_one_head() -> None:
    script = ScriptDirectory.from_config(migrate.alembic_config("postgresql://unused"))
    assert len(script.get_heads()) == 1
    # Every revision but the first revises the one before: a single line, no branches.
    assert [r.down_revision for r in script.walk_revisions()][-1] is None


@pytest.fixture
def scratch_db(stack: Context) -> Iterator[str]:
    """A database of its own in the real PostgreSQL, owned by the catalog's role."""
    name = f"catalog_migrations_{secrets.token_hex(4)}"
    with postgres.connect(stack) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER catalog").format(sql.Identifier(name)))
    s = stack.settings
    password = quote(s.catalog_db_password.get_secret_value(), safe="")
    try:
        yield f"postgresql+psycopg://catalog:{password}@{s.host('postgres')}:{s.postgres_port}/{name}"
    finally:
        with postgres.connect(stack) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.mark.integration
def test_upgrade_builds_the_models_schema_and_downgrade_removes_it(scratch_db: str) -> None:
    migrate.upgrade(scratch_db)
    migrate.upgrade(scratch_db)  # a second start finds nothing to do
    engine = create_engine(scratch_db)
    try:
        with engine.connect() as conn:
            differences = compare_metadata(MigrationContext.configure(conn), Base.metadata)
            # The workflow index on spec->>'dag_id' is an expression index the models don't declare.
            assert [d for d in differences if not (d[0] == "remove_index"
                                                   and d[1].name == "ix_assets_workflow_dag")] == []
        from alembic import command
        command.downgrade(migrate.alembic_config(scratch_db), "base")
        assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    finally:
        engine.dispose()
