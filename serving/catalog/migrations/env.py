"""Alembic's environment for the catalog: online migrations on the configured URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from serving.catalog.db import Base

config = context.config
target_metadata = Base.metadata


def run() -> None:
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "", poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            # Two gunicorn masters (a restart overlapping a start) must not migrate at once.
            context.execute("SELECT pg_advisory_xact_lock(7471203)")
            context.run_migrations()
    engine.dispose()


run()
