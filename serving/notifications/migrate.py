"""Bring the notification database to the newest schema: Alembic's ``upgrade head``.

Run at every start, before the consumer and the API (app.py's lifespan), or by hand:
``python -m serving.notifications.migrate`` (reads NOTIFICATIONS_DATABASE_URL).
"""

from __future__ import annotations

import os
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(url: str) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser interpolation would read a % in the password as a placeholder.
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def main() -> None:
    upgrade(os.environ["NOTIFICATIONS_DATABASE_URL"])


if __name__ == "__main__":
    main()
