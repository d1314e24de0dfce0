"""The model server's Flask application: ``create_app(config)``.

Under gunicorn (``serving.model_server.app:create_app()``) each worker builds
its own app after the fork, so each has its own model holder and publisher
thread; the capture spool on disk is shared. A request goes parse -> fill the
records that name a patient from Ignite (profiles.py) -> validate (against the
loaded model's schema) -> predict -> spool the events -> answer. ``/v1/model``
and ``/v1/model/onnx`` hand devices the served version's file (download.py).
"""

from __future__ import annotations

import logging
import sqlite3
import time
import uuid
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from serving.model_server import api, download, metrics, openapi
from serving.model_server.auth import AuthConfig, TokenValidator
from serving.model_server.capture import Publisher, Spool, kafka_producer, prediction_messages
from serving.model_server.config import Config
from serving.model_server.model import LoadedModel, ModelHolder, load_version
from serving.model_server.profiles import IgniteProfiles, ProfileSource
from serving.model_server.registry import Registry
from skiff.bracelet.events import Label, Prediction, now
from skiff.bracelet.features import FeatureSchema

log = logging.getLogger(__name__)

HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}


@dataclass
class ServerState:
    """What the views share: one per app (per gunicorn worker)."""

    config: Config
    holder: ModelHolder
    spool: Spool
    publisher: Publisher
    registry: Registry
    profiles: ProfileSource

    def close(self) -> None:
        """Stop the threads; the publisher first sends what it has in hand."""
        self.holder.stop()
        self.publisher.stop()
        self.registry.close()
        self.spool.close()
        close_profiles = getattr(self.profiles, "close", None)
        if close_profiles is not None:
            close_profiles()


def build_state(config: Config) -> ServerState:
    registry = Registry(config.tracking_uri)
    holder = ModelHolder(
        resolve=lambda: registry.resolve(config.model_name, config.model_alias),
        load=lambda mv: load_version(registry, mv),
        interval=config.refresh_seconds,
        on_swap=lambda m: metrics.MODEL_SWAPS.inc(),
        on_error=lambda exc: metrics.MODEL_LOAD_FAILURES.inc(),
    )
    spool = Spool(config.spool_dir)
    publisher = Publisher(spool, lambda: kafka_producer(config.kafka_bootstrap),
                          on_published=metrics.PUBLISHED.inc,
                          on_failure=lambda exc: metrics.PUBLISH_FAILURES.inc())
    profiles = IgniteProfiles(config.ignite_host, config.ignite_port, config.ignite_password,
                              timeout=config.ignite_timeout)
    return ServerState(config, holder, spool, publisher, registry, profiles)


def serving_model(state: ServerState) -> LoadedModel:
    model = state.holder.current
    if model is None:
        why = f" ({state.holder.last_error})" if state.holder.last_error else ""
        raise api.ApiError(503, "no_model", f"no version of {state.config.model_name}@"
                           f"{state.config.model_alias} is loaded yet{why}")
    return model


def spool(state: ServerState, events: list[Prediction] | list[Label]) -> None:
    """The outbox step: on disk before we answer, on Kafka later."""
    try:
        state.spool.append(prediction_messages(events))
    except sqlite3.Error as exc:
        # Answering without capture would silently break the platform's record
        # of what was predicted; the client can retry.
        metrics.CAPTURE_FAILURES.inc()
        log.error("spooling capture events failed: %s", exc)
        raise api.ApiError(503, "capture_unavailable", "the capture spool is not writable") from exc
    state.publisher.wake()


def predict(state: ServerState) -> dict[str, Any]:
    req = api.parse_predict(request.get_data(cache=False))
    # Read the reference once: this request uses one model version throughout.
    model = serving_model(state)
    # Events capture the filled records: what the model saw, not what the device sent.
    records = api.fill_records(req.records, state.profiles.get_many, model.schema.names)
    clean = api.validate_records(model.schema, records)
    results = model.predict(clean)
    at = now()
    events = [Prediction(uuid.uuid4(), at, model.name, model.version, values, label, probability)
              for values, (label, probability) in zip(clean, results, strict=True)]
    spool(state, events)
    metrics.PREDICTIONS.labels(model.version).inc(len(events))
    outcomes = [api.Outcome(e.request_id, e.prediction, e.probability) for e in events]
    return api.predictions_body(model.name, model.version, outcomes, req.single)


def feedback(state: ServerState) -> dict[str, Any]:
    fb = api.parse_feedback(request.get_data(cache=False))
    spool(state, [Label(fb.request_id, now(), fb.label)])
    return {"request_id": str(fb.request_id), "status": "accepted"}


def create_app(config: Config | None = None, validator: TokenValidator | None = None) -> Flask:
    config = config or Config.from_env()
    # Every route but health and metrics needs a Keycloak token (auth.py).
    validator = validator or TokenValidator(AuthConfig.from_env())
    if not logging.getLogger().handlers:
        # Under gunicorn only its own loggers have handlers; ours go to stderr (the service log).
        logging.basicConfig(level=logging.INFO,
                            format="%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s")
        # httpx logs every request at INFO (an alias check per worker every few
        # seconds); kafka-python logs several ERROR lines a second while the broker
        # is down. The publisher reports delivery problems itself, once each.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        logging.getLogger("kafka").setLevel(logging.CRITICAL)
    state = build_state(config)
    if config.background:
        state.holder.start()
        state.publisher.start()

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = api.MAX_BODY_BYTES
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["model_server"] = state

    @app.before_request
    def start_timer() -> None:
        g.started = time.perf_counter()

    @app.before_request
    def authenticate() -> None:
        g.claims = validator.check(request.path, request.headers.get("Authorization"))

    @app.after_request
    def observe(response: Response) -> Response:
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        metrics.REQUESTS.labels(endpoint, request.method, str(response.status_code)).inc()
        if "started" in g:
            metrics.LATENCY.labels(endpoint).observe(time.perf_counter() - g.started)
        return response

    @app.errorhandler(api.ApiError)
    def api_error(err: api.ApiError) -> tuple[Response, int]:
        response = jsonify(api.error_body(err))
        if err.status == 401:
            # RFC 6750: tell the client it is a bearer-token API and what went wrong.
            response.headers["WWW-Authenticate"] = (
                f'Bearer error="invalid_token", error_description="{err.code}"')
        return response, err.status

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        status = exc.code or 500
        code = HTTP_CODES.get(status, "bad_request" if status < 500 else "internal_error")
        return jsonify(api.error_body(api.ApiError(status, code, exc.description or exc.name))), status

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> tuple[Response, int]:
        log.exception("unhandled error in %s %s", request.method, request.path)
        err = api.ApiError(500, "internal_error", f"{type(exc).__name__}; see the server log")
        return jsonify(api.error_body(err)), 500

    @app.post("/v1/predict")
    def predict_view() -> Response:
        return jsonify(predict(state))

    @app.post("/v1/feedback")
    def feedback_view() -> tuple[Response, int]:
        return jsonify(feedback(state)), 202

    @app.get("/v1/model")
    def model_view() -> Response:
        return jsonify(download.model_info(serving_model(state)))

    @app.get("/v1/model/onnx")
    def model_onnx_view() -> Response:
        return download.onnx_response(serving_model(state), request)

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify({"status": "ok"})

    @app.get("/readyz")
    def readyz() -> Response:
        model = serving_model(state)
        return jsonify({"status": "ready", "model": {"name": model.name, "version": model.version}})

    @app.get("/metrics")
    def metrics_view() -> Response:
        body, content_type = metrics.render(state.spool.depth)
        return Response(body, headers={"Content-Type": content_type})

    @app.get("/openapi.json")
    def openapi_view() -> Response:
        model = state.holder.current
        schema = model.schema if model else FeatureSchema()
        return jsonify(openapi.document(schema, config.model_name, model.version if model else None))

    return app
