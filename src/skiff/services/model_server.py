"""The model server: the bracelet model's REST API (serving/model_server, gunicorn).

It serves whatever version ``MODEL_NAME@MODEL_ALIAS`` points to in MLflow and
picks up a new one within ``MODEL_REFRESH_SECONDS``, so it starts (and is
healthy) before any model exists: readiness is ``/healthz``; ``/readyz`` says
whether a model is loaded. Its API takes only Keycloak bearer tokens with the
``model-api`` audience (devices: client credentials of ``DEVICE_CLIENT_ID``).
Predictions are captured through a spool on disk (``data/model-server/spool``)
that a background thread publishes to Kafka. A request that names a patient
(``patient_id``) is completed from the patient's profile in Ignite.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from skiff.native import installing
from skiff.native.context import Context
from skiff.native.probes import http_ok
from skiff.native.spec import Program, Service
from skiff.services import gunicorn, kafka, keycloak, mlflow

NAME = "model-server"
WORKERS = 2
# Requests are short CPU work (a 13-column ONNX run, one SQLite commit); a few
# threads per worker cover the time spent in fsync and on the network.
THREADS = 4


def install(ctx: Context) -> None:
    venv = installing.venv("serving", ctx.venv("serving"), ctx.root / "docker/serving/requirements.txt")
    # The checkout itself, editable, so `skiff` and `serving` import from it; its
    # dependencies are the pinned requirements above, hence --no-deps.
    installing.checkout(NAME, venv, ctx.root)


def spool_dir(ctx: Context) -> Path:
    return ctx.data_dir(NAME) / "spool"


def metrics_dir(ctx: Context) -> Path:
    # Per-worker sample files; gunicorn_conf.on_starting empties it at each start.
    return ctx.data_dir(NAME) / "prometheus"


def prepare(ctx: Context) -> None:
    spool_dir(ctx).mkdir(parents=True, exist_ok=True)
    # Also emptied by gunicorn at start; done here too in case a crash left a file
    # from a worker whose pid is reused.
    shutil.rmtree(metrics_dir(ctx), ignore_errors=True)
    metrics_dir(ctx).mkdir(parents=True)


def env(ctx: Context) -> dict[str, str]:
    s = ctx.settings
    return {
        "MLFLOW_TRACKING_URI": mlflow.tracking_uri(ctx),
        "MODEL_NAME": s.model_name,
        "MODEL_ALIAS": s.model_alias,
        "MODEL_REFRESH_SECONDS": str(s.model_refresh_seconds),
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers(ctx),
        "CAPTURE_SPOOL_DIR": str(spool_dir(ctx)),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir(ctx)),
        # Only Keycloak's tokens for the model API (serving/model_server/auth.py): the
        # public issuer, keys fetched at the internal address.
        "AUTH_ISSUER": s.keycloak_issuer,
        "AUTH_JWKS_URL": keycloak.jwks_url(ctx),
        "AUTH_AUDIENCE": keycloak.MODEL_API_AUDIENCE,
        # Patient profiles that complete requests naming a patient. Not a dependency:
        # without Ignite only those requests fail (503), full records are still served.
        "IGNITE_HOST": s.host("ignite"),
        "IGNITE_PORT": str(s.ignite_port),
        "IGNITE_PASSWORD": s.ignite_password.get_secret_value(),
    }


def programs(ctx: Context) -> list[Program]:
    return [gunicorn.program(ctx, NAME, app="serving.model_server.app:create_app()",
                             port=ctx.settings.model_server_port, workers=WORKERS, threads=THREADS,
                             env=env(ctx), config="serving.model_server.gunicorn_conf")]


def url(ctx: Context) -> str:
    return f"http://{ctx.settings.host('model_server')}:{ctx.settings.model_server_port}"


def ready(ctx: Context) -> None:
    http_ok(f"{url(ctx)}/healthz")


SERVICE = Service(
    name=NAME,
    description="Model server: REST predictions of MODEL_NAME@MODEL_ALIAS, captured to Kafka",
    programs=programs,
    ready=ready,
    url=url,
    ports=lambda ctx: [ctx.settings.model_server_port],
    # Not on Kafka: the outbox keeps answering and spooling while Kafka is away.
    # On Keycloak: every prediction needs its keys to check the caller's token.
    depends_on=("mlflow", "keycloak"),
    install=install,
    prepare=prepare,
    start_timeout=60,
)
