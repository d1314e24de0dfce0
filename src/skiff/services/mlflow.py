"""MLflow tracking server: runs and registry in PostgreSQL, artifacts proxied to S3.

Clients never hold S3 keys: with ``--serve-artifacts`` they upload and download
artifacts through the server (``mlflow-artifacts:/`` URIs), which writes to the
``mlflow`` bucket.

Traefik serves it at ``/mlflow/`` of the public address, behind the portal's
forward-auth (MLflow has no login of its own here). ``--static-prefix /mlflow``
puts every route there, the REST API and ``/health`` included, so the tracking
URI is ``http://host:5000/mlflow`` inside as well as outside. MLflow's host check
(DNS rebinding) must then allow the public host, which Traefik passes on.
"""

from __future__ import annotations

from skiff.envfile import parse
from skiff.native import installing
from skiff.native.context import Context
from skiff.native.probes import http_ok
from skiff.native.spec import Program, Service
from skiff.services import keycloak

ARTIFACT_BUCKET = "mlflow"
# Where Traefik routes MLflow; the server serves everything under it.
STATIC_PREFIX = "/mlflow"


def install(ctx: Context) -> None:
    target = installing.venv("mlflow", ctx.venv("mlflow"), ctx.root / "docker/mlflow/requirements.txt")
    # MLflow finds our authorization app (serving.mlflow_auth) by its entry point.
    installing.checkout("mlflow", target, ctx.root)


def tracking_uri(ctx: Context) -> str:
    """What clients on the platform set as MLFLOW_TRACKING_URI (the prefix included)."""
    return f"http://{ctx.settings.host('mlflow')}:{ctx.settings.mlflow_port}{STATIC_PREFIX}"


def allowed_hosts(ctx: Context) -> list[str]:
    """Host headers MLflow answers: its own address, and the public one through Traefik."""
    s = ctx.settings
    public = s.public_url.split("://", 1)[1]
    return list(dict.fromkeys([public, s.public_host, f"{s.host('mlflow')}:{s.mlflow_port}",
                               f"127.0.0.1:{s.mlflow_port}", f"localhost:{s.mlflow_port}"]))


def backend_uri(ctx: Context) -> str:
    s = ctx.settings
    return (f"postgresql+psycopg2://mlflow:{s.mlflow_db_password.get_secret_value()}"
            f"@{s.host('postgres')}:{s.postgres_port}/mlflow")


def programs(ctx: Context) -> list[Program]:
    s = ctx.settings
    env = parse(ctx.compose_file("mlflow", "mlflow.env").read_text())
    env.update({
        "MLFLOW_S3_ENDPOINT_URL": s.s3_endpoint,
        "AWS_ACCESS_KEY_ID": s.s3_access_key,
        "AWS_SECRET_ACCESS_KEY": s.s3_secret_key.get_secret_value(),
        # The backend URI carries a password: keep it out of the command line (`ps`).
        "MLFLOW_BACKEND_STORE_URI": backend_uri(ctx),
        # serving.mlflow_auth checks tokens of the realm (--app-name skiff).
        "AUTH_ISSUER": s.keycloak_issuer,
        "AUTH_JWKS_URL": keycloak.jwks_url(ctx),
    })
    return [Program(
        name="mlflow",
        command=[str(ctx.venv("mlflow") / "bin" / "mlflow"), "server",
                 "--host", s.bind_host, "--port", str(s.mlflow_port), "--workers", "1",
                 "--serve-artifacts", "--artifacts-destination", f"s3://{ARTIFACT_BUCKET}/",
                 "--static-prefix", STATIC_PREFIX,
                 # Who may change what, by the platform's roles (serving/mlflow_auth.py).
                 "--app-name", "skiff",
                 "--allowed-hosts", ",".join(allowed_hosts(ctx)),
                 # The UI's own POSTs come from the public origin (any localhost one is allowed).
                 "--cors-allowed-origins", s.public_url],
        env=env,
        directory=ctx.data_dir("mlflow"),
    )]


def ready(ctx: Context) -> None:
    http_ok(f"{tracking_uri(ctx)}/health")


SERVICE = Service(
    name="mlflow",
    description="MLflow tracking server and model registry",
    programs=programs,
    ready=ready,
    url=tracking_uri,
    ports=lambda ctx: [ctx.settings.mlflow_port],
    depends_on=("postgres", "s3"),
    install=install,
    start_timeout=180,
)
