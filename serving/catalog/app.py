"""The catalog's Flask application: ``create_app(config)`` (under gunicorn, one per worker)."""

from __future__ import annotations

import logging

from flask import Flask, Response, g, jsonify, request
from sqlalchemy.exc import IntegrityError, OperationalError
from werkzeug.exceptions import HTTPException

from serving.catalog import openapi
from serving.catalog.auth import TokenValidator
from serving.catalog.config import Config
from serving.catalog.crypto import Secrets
from serving.catalog.db import Database
from serving.catalog.errors import ApiError
from serving.catalog.state import CatalogState
from serving.catalog.views import api

log = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/healthz"})
# Large enough for an OpenLineage event with many datasets and facets.
MAX_BODY_BYTES = 4 * 1024 * 1024
HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}


def create_app(config: Config | None = None) -> Flask:
    config = config or Config.from_env()
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO,
                            format="%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s")
        # httpx logs every call provisioning makes to the S3 gateway's admin API at INFO.
        logging.getLogger("httpx").setLevel(logging.WARNING)
    state = CatalogState(config=config, db=Database(config.database_url),
                         secrets=Secrets(config.secret_key), validator=TokenValidator(config))
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["catalog"] = state

    @app.before_request
    def authenticate() -> None:
        if request.path in OPEN_PATHS:
            return
        g.caller = state.validator.caller(request.headers.get("Authorization"))

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError) -> tuple[Response, int]:
        return jsonify(exc.body()), exc.status

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        status = exc.code or 500
        return jsonify({"error": HTTP_CODES.get(status, "http_error"),
                        "message": exc.description or exc.name}), status

    @app.errorhandler(IntegrityError)
    def conflict(exc: IntegrityError) -> tuple[Response, int]:
        # Two requests creating the same name at once: the database's constraint decides.
        return jsonify({"error": "exists", "message": "a concurrent request created it first; "
                        "read it and retry if needed"}), 409

    @app.errorhandler(OperationalError)
    def database_down(exc: OperationalError) -> tuple[Response, int]:
        log.error("database: %s", exc)
        return jsonify({"error": "database_unavailable",
                        "message": "the catalog's database does not answer"}), 503

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify({"status": "ok"})

    @app.get("/openapi.json")
    def openapi_view() -> Response:
        return jsonify(openapi.document())

    app.register_blueprint(api)
    return app
