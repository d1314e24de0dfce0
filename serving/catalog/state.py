"""What the app's views share (one per app, i.e. per gunicorn worker), and how code running
inside a request (stores.py's provisioning) reaches it: :func:`current`."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from serving.catalog.auth import TokenValidator
from serving.catalog.config import Config
from serving.catalog.crypto import Secrets
from serving.catalog.db import Database


@dataclass
class CatalogState:
    config: Config
    db: Database
    secrets: Secrets
    validator: TokenValidator


def current() -> CatalogState:
    """The running app's state: ``with current().db.session() as session: ...``."""
    return current_app.extensions["catalog"]
