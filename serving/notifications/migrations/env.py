"""Alembic's environment for the notification service: online migrations on the configured URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

config = context.config


def run() -> None:
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "", poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=None)
        with context.begin_transaction():
            # Two starts overlapping (a restart) must not migrate at once.
            context.execute("SELECT pg_advisory_xact_lock(7471204)")
            context.run_migrations()
    engine.dispose()


run()
