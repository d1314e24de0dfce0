"""Bring the notification database to the newest schema: Alembic's ``upgrade head``.

Run at every start, before the consumer and the API (app.py's lifespan), or by hand:
``python -m serving.notifications.migrate`` (reads NOTIFICATIONS_DATABASE_URL).
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
    upgrade(os.environ["NOTIFICATIONS_DATABASE_URL"])


if __name__ == "__main__":
    main()
