"""Airflow: the platform's workflow scheduler (API server, scheduler, DAG processor,
triggerer) and its Celery workers.

Natively it runs from a venv built from ``docker/airflow/requirements.txt`` (the
image's pins), on the ``airflow`` database of our PostgreSQL, with CeleryExecutor
(docs/decisions/0011-airflow-workers.md): the scheduler puts tasks on Redis
(the redis service), and two workers take them, one per queue: ``airflow-worker``
the ``default`` queue, ``airflow-worker-gpu`` the ``gpu`` queue (on a machine with
a GPU; here it shows that routing works). More workers, on other machines, are
the same command pointed at the same broker and database.
Settings shared with Compose live in ``compose/airflow/airflow.env``; the
host-dependent ones (database URL, folders, URLs, secrets) are built here.

Authentication and authorization are Keycloak's (docs/decisions/0008-airflow-keycloak.md):
the provider's Keycloak auth manager logs people in through the realm and asks
Keycloak's Authorization Services about every request; ``bootstrap`` writes what
each realm role may do (:mod:`skiff.airflow_authz`) and the training trigger's
own user. Airflow is served under ``/airflow``, behind Traefik at
``{public_url}/airflow`` and at ``http://{host}:{port}/airflow`` for the
platform's own clients (Starlette strips the root path from either).
"""

from __future__ import annotations

import functools
import json
import os
import socket
import subprocess
from pathlib import Path
from urllib.parse import quote

import httpx

from skiff import cassandra_access
from skiff.envfile import parse
from skiff.native import installing
from skiff.native.context import Context
from skiff.native.spec import NotReady, Program, Service
from skiff.pipelines.spec import GPU_QUEUE
from skiff.services import mlflow, redis, spark

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
# The path Airflow is served under, publicly (Traefik routes it unchanged) and internally.
PATH = "/airflow"
# Where the Elyra runtime writes the DAGs of submitted pipelines (inside the DAGs folder).
PIPELINES = "pipelines"
# The parts of GET /api/v2/monitor/health that must say "healthy".
HEALTH_PARTS = ("metadatabase", "scheduler", "triggerer", "dag_processor")
# Which part of that report says whether a component does its job.
HEALTH_OF = {"api-server": "metadatabase", "scheduler": "scheduler",
             "dag-processor": "dag_processor", "triggerer": "triggerer"}
DEFAULT_QUEUE = "default"
# The Celery app of Airflow's executor: what `celery inspect` talks through.
CELERY_APP = "airflow.providers.celery.executors.celery_executor.app"


def workers(ctx: Context) -> dict[str, tuple[str, int]]:
    """Each native Celery worker: program name -> (queue, concurrency).

    The default queue's worker runs as many tasks at once as Airflow's parallelism
    allows; a GPU is one device, so its worker runs one task at a time.
    """
    return {"airflow-worker": (DEFAULT_QUEUE, ctx.settings.airflow_parallelism),
            "airflow-worker-gpu": (GPU_QUEUE, 1)}


def venv(ctx: Context) -> Path:
    return ctx.venv("airflow")


def airflow_bin(ctx: Context) -> Path:
    return venv(ctx) / "bin" / "airflow"


def install(ctx: Context) -> None:
    target = installing.venv("airflow", venv(ctx), ctx.root / "docker" / "airflow" / "requirements.txt")
    # DAGs and notebooks import skiff (the bracelet features, promotion), and MLflow
    # finds its token provider by an entry point: this checkout, editable.
    installing.checkout("airflow", target, ctx.root)


def base_url(ctx: Context) -> str:
    """The API server for the platform's own clients and probes (REST API, /auth/token)."""
    s = ctx.settings
    return f"http://{s.host('airflow')}:{s.airflow_port}{PATH}"


def public_url(ctx: Context) -> str:
    """Where people open Airflow: through Traefik, logging in with Keycloak."""
    return f"{ctx.settings.public_url}{PATH}"


def dags_folder(ctx: Context) -> Path:
    return ctx.root / "dags"


def database_url(ctx: Context) -> str:
    s = ctx.settings
    password = quote(s.airflow_db_password.get_secret_value(), safe="")
    return f"postgresql+psycopg2://airflow:{password}@{s.host('postgres')}:{s.postgres_port}/airflow"


def airflow_env(ctx: Context) -> dict[str, str]:
    """The environment of every Airflow command: airflow.env plus this host's settings."""
    s = ctx.settings
    env = parse(ctx.compose_file("airflow", "airflow.env").read_text())
    env.update({
        "AIRFLOW_HOME": str(ctx.data_dir("airflow")),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database_url(ctx),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder(ctx)),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ctx.root / "plugins"),
        "AIRFLOW__CORE__PARALLELISM": str(s.airflow_parallelism),
        "AIRFLOW__CORE__FERNET_KEY": s.airflow_fernet_key.get_secret_value(),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url(ctx)}/execution/",
        "AIRFLOW__API__HOST": s.bind_host,
        "AIRFLOW__API__PORT": str(s.airflow_port),
        # Whose X-Forwarded-* uvicorn believes: Traefik's, which natively connects from
        # loopback and in Compose from its own container (only it reaches this port).
        "FORWARDED_ALLOW_IPS": "127.0.0.1" if s.bind_host == "127.0.0.1" else "*",
        # The public address: login redirects, cookies' path and the UI's links use it.
        "AIRFLOW__API__BASE_URL": public_url(ctx),
        # Back-channel calls (tokens, userinfo, permission checks) go to Keycloak's
        # internal address; the login redirect takes the browser to the public one,
        # which is what the realm's discovery document names (hostname v2). The
        # slash: python-keycloak urljoin()s its paths, which would drop /auth.
        "AIRFLOW__KEYCLOAK_AUTH_MANAGER__SERVER_URL": s.keycloak_internal_url.rstrip("/") + "/",
        "AIRFLOW__KEYCLOAK_AUTH_MANAGER__REALM": s.keycloak_realm,
        "AIRFLOW__KEYCLOAK_AUTH_MANAGER__CLIENT_SECRET": s.airflow_client_secret.get_secret_value(),
        "AIRFLOW__API__SECRET_KEY": s.airflow_api_secret_key.get_secret_value(),
        "AIRFLOW__API_AUTH__JWT_SECRET": s.airflow_jwt_secret.get_secret_value(),
        "AIRFLOW__CELERY__BROKER_URL": redis.broker_url(ctx),
        # Task states live in Airflow's own database: Celery's results beside them.
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + database_url(ctx),
    })
    env.update(task_env(ctx))
    # dags/load_profiles.py writes patient profiles to Ignite. Not in task_env: that also
    # goes to every user's workspace, and this password is Ignite's superuser's.
    env.update({
        "IGNITE_HOST": s.host("ignite"),
        "IGNITE_PORT": str(s.ignite_port),
        "IGNITE_PASSWORD": s.ignite_password.get_secret_value(),
    })
    return env


def task_env(ctx: Context) -> dict[str, str]:
    """What the platform's DAGs and notebooks read: where MLflow, Kafka, Cassandra and S3 are.

    docker-compose.yml sets the same variables on the Airflow containers.
    """
    s = ctx.settings
    return {
        "MLFLOW_TRACKING_URI": mlflow.tracking_uri(ctx),
        # MLflow's usage telemetry has nowhere to go here, and its background thread
        # unsets a variable the REST client reads: a task failed on that race.
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "KAFKA_HOST": s.host("kafka"),
        "KAFKA_PORT": str(s.kafka_port),
        "CASSANDRA_HOST": s.host("cassandra"),
        "CASSANDRA_PORT": str(s.cassandra_port),
        # Training and monitoring read the captured requests as Cassandra's reader role.
        **cassandra_access.login(s, cassandra_access.READER).env(),
        "S3_HOST": s.host("s3"),
        "S3_PORT": str(s.s3_port),
        "S3_REGION": s.s3_region,
        "S3_ACCESS_KEY": s.s3_access_key,
        "S3_SECRET_KEY": s.s3_secret_key.get_secret_value(),
        "MODEL_NAME": s.model_name,
        "MODEL_ALIAS": s.model_alias,
        # Spark Connect with its token: DAG tasks and notebooks submit Spark work there.
        "SPARK_REMOTE": spark.client_remote(ctx),
        # The catalog (skiff.catalog): tasks post lineage there with the token of the
        # Keycloak client Airflow logs in with (AIRFLOW__KEYCLOAK_AUTH_MANAGER__*, in
        # airflow_env only); notebooks call it with their user's own token.
        "CATALOG_URL": f"http://{s.host('catalog')}:{s.catalog_port}",
        # skiff.events: where the runs' events go (Kafka topic) and their large payloads.
        "SKIFF_EVENTS_TOPIC": s.events_topic,
        "SKIFF_EVENTS_BUCKET": s.events_bucket,
    }


def prepare(ctx: Context) -> None:
    """Bring the database schema up to date (idempotent)."""
    # The folder the Elyra runtime writes pipelines' DAGs to; Airflow walks into it.
    (dags_folder(ctx) / PIPELINES).mkdir(parents=True, exist_ok=True)
    # SimpleAuthManager's passwords file, from before single sign-on: a secret nothing reads.
    (ctx.conf_dir("airflow") / "simple_auth_manager_passwords.json").unlink(missing_ok=True)
    log = ctx.log_dir / "airflow-db-migrate.log"
    done = subprocess.run(
        [str(airflow_bin(ctx)), "db", "migrate"],
        env={**os.environ, **airflow_env(ctx)}, cwd=ctx.data_dir("airflow"),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False,
    )
    log.write_text(done.stdout)
    if done.returncode != 0:
        tail = "\n".join(done.stdout.splitlines()[-25:])
        raise RuntimeError(
            f"airflow: `airflow db migrate` failed ({done.returncode}), see {log}\n{tail}")


def programs(ctx: Context) -> list[Program]:
    env = airflow_env(ctx)
    home = ctx.data_dir("airflow")
    # All components share one host, so the API server reads task logs from
    # AIRFLOW_HOME/logs itself: no log-serving subprocesses (they bind 0.0.0.0).
    # Behind Traefik: X-Forwarded-Proto makes the login's cookies Secure (uvicorn
    # trusts it only from where Traefik connects: FORWARDED_ALLOW_IPS in airflow_env).
    extra = {"scheduler": ["--skip-serve-logs"], "triggerer": ["--skip-serve-logs"],
             "api-server": ["--proxy-headers"]}
    components = [
        Program(
            name=f"airflow-{component}",
            command=[str(airflow_bin(ctx)), component, *extra.get(component, [])],
            env=env,
            directory=home,
            stop_wait=30,
            health=functools.partial(_part_healthy, part=HEALTH_OF[component]),
        )
        for component in COMPONENTS
    ]
    return components + [
        Program(
            name=name,
            # The Celery node name (name@host) tells the workers apart in `celery inspect`.
            command=[str(airflow_bin(ctx)), "celery", "worker", "--queues", queue,
                     "--concurrency", str(concurrency), "--celery-hostname", f"{name}@%h",
                     "--skip-serve-logs"],
            # ...and the host name on the task instances they run (skiff.airflow_hostname).
            env={**env, "SKIFF_WORKER_NAME": name,
                 "AIRFLOW__CORE__HOSTNAME_CALLABLE": "skiff.airflow_hostname.hostname"},
            directory=home,
            # A warm shutdown lets running tasks finish (Celery's first SIGTERM).
            stop_wait=60,
            health=functools.partial(_worker_answers, name=name),
        )
        for name, (queue, concurrency) in workers(ctx).items()
    ]


def _part_healthy(ctx: Context, part: str) -> None:
    """One component's own health, as the API server's report gives it (a container's probe)."""
    try:
        status = (health(base_url(ctx)).get(part) or {}).get("status")
    except httpx.HTTPError as exc:
        raise NotReady(f"API server: {type(exc).__name__}: {exc}") from exc
    if status != "healthy":
        raise NotReady(f"{part} is {status}")


def _worker_answers(ctx: Context, name: str) -> None:
    if name not in answering_workers(ctx, names=[name]):
        raise NotReady(f"Celery worker {name}@{socket.gethostname()} does not answer a ping")


def health(url: str, timeout: float = 5.0) -> dict:
    """The API server's health report (no authentication needed)."""
    response = httpx.get(f"{url}/api/v2/monitor/health", timeout=timeout)
    response.raise_for_status()
    return response.json()


def ready(ctx: Context) -> None:
    try:
        report = health(base_url(ctx))
    except httpx.HTTPError as exc:
        raise NotReady(f"API server: {type(exc).__name__}: {exc}") from exc
    unhealthy = [
        f"{part}={(report.get(part) or {}).get('status')}"
        for part in HEALTH_PARTS
        if (report.get(part) or {}).get("status") != "healthy"
    ]
    if unhealthy:
        raise NotReady("not healthy yet: " + ", ".join(unhealthy))
    silent = sorted(set(workers(ctx)) - answering_workers(ctx))
    if silent:
        raise NotReady("Celery workers not answering a ping: " + ", ".join(silent))


def answering_workers(ctx: Context, timeout: float = 5.0,
                      names: list[str] | None = None) -> set[str]:
    """The workers of this host (program names; all by default) that answer ``celery
    inspect ping`` through the broker."""
    # Naming the nodes lets `inspect` return once all have answered, not after the timeout.
    nodes = ",".join(f"{name}@{socket.gethostname()}" for name in names or workers(ctx))
    try:
        done = subprocess.run(
            [str(venv(ctx) / "bin" / "celery"), "--app", CELERY_APP, "inspect", "ping",
             "--json", "--timeout", str(timeout), "--destination", nodes],
            env={**os.environ, **airflow_env(ctx)}, cwd=ctx.data_dir("airflow"),
            capture_output=True, text=True, check=False, timeout=timeout + 60,
        )
    except subprocess.TimeoutExpired:  # a broker that accepts but never answers
        return set()
    # One JSON object of node name -> {"ok": "pong"}; nothing answering exits 69.
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("{"):
            replies = json.loads(line)
            return {node.partition("@")[0] for node, reply in replies.items()
                    if reply.get("ok") == "pong"}
    return set()


def bootstrap(ctx: Context) -> None:
    """What each realm role may do in Airflow, and the training trigger's user (idempotent)."""
    # Imported here: the CLI's other commands need not load python-keycloak.
    from keycloak.exceptions import KeycloakError

    from skiff import airflow_authz
    from skiff import keycloak as kc

    s = ctx.settings
    try:
        admin = kc.admin_client(s)
        report = airflow_authz.converge(admin)
        installing.step("airflow", f"Keycloak authorization of client {airflow_authz.CLIENT_ID!r}: "
                                   f"{report.summary()}")
        outcome = airflow_authz.ensure_service_user(
            admin, s, s.training_trigger_user, s.training_trigger_password.get_secret_value(),
            airflow_authz.TRAINING_TRIGGER_ROLE)
        if outcome == "created":
            installing.step("airflow", f"created the training trigger's user {s.training_trigger_user!r} "
                                       f"(role {airflow_authz.TRAINING_TRIGGER_ROLE})")
    except KeycloakError as exc:
        raise RuntimeError(f"airflow: bootstrap of its Keycloak authorization failed: "
                           f"{kc.describe(exc)}") from exc
    except kc.UserError as exc:  # e.g. TRAINING_TRIGGER_USER is no valid user name
        raise RuntimeError(f"airflow: {exc}") from exc


def url(ctx: Context) -> str:
    return base_url(ctx)


def ports(ctx: Context) -> list[int]:
    return [ctx.settings.airflow_port]


SERVICE = Service(
    name="airflow",
    description="Airflow: API server and UI, scheduler, DAG processor, triggerer, Celery workers",
    programs=programs,
    ready=ready,
    url=url,
    ports=ports,
    depends_on=("postgres", "keycloak", "redis"),
    install=install,
    prepare=prepare,
    bootstrap=bootstrap,
    start_timeout=240.0,
)
