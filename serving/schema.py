"""Alembic for the services that keep their state in PostgreSQL (the catalog, the
notification service): each has its own ``migrations/`` folder and a ``migrate``
module naming it; bringing a database to ``head`` is the same for all of them."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig


def alembic_config(migrations: Path, url: str) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(migrations))
    # ConfigParser interpolation would read a % in the password as a placeholder.
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(migrations: Path, url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(migrations, url), revision)
