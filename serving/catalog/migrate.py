"""Bring the catalog's database to the newest schema: Alembic's ``upgrade head``.

Run once per start, by gunicorn's master before it forks workers
(gunicorn_conf.on_starting), or by hand: ``python -m serving.catalog.migrate``
(reads CATALOG_DATABASE_URL). New schema: add a revision under migrations/versions.
"""

from __future__ import annotations

import os
from pathlib import Path

from alembic.config import Config as AlembicConfig

from serving import schema

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(url: str) -> AlembicConfig:
    return schema.alembic_config(MIGRATIONS, url)


def upgrade(url: str, revision: str = "head") -> None:
    schema.upgrade(MIGRATIONS, url, revision)


def main() -> None:
    upgrade(os.environ["CATALOG_DATABASE_URL"])


if __name__ == "__main__":
    main()
