"""gunicorn hooks of the catalog: migrate the database once, in the master, before workers fork.

``gunicorn -c python:serving.catalog.gunicorn_conf 'serving.catalog.app:create_app()'``;
the command line sets bind and workers.
"""

from __future__ import annotations

import os
from typing import Any

# gunicorn 25.1+ would open ~/.gunicorn/gunicorn.ctl, shared with the other gunicorns.
control_socket_disable = True
worker_class = "gthread"
graceful_timeout = 20


def on_starting(server: Any) -> None:
    from serving.catalog.migrate import upgrade

    upgrade(os.environ["CATALOG_DATABASE_URL"])
