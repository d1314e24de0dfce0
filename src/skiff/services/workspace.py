"""The workspace: what each user's JupyterLab server runs (JupyterLab 4, Elyra 4.1, Papermill).

Not a service of its own: JupyterHub (skiff.services.jupyterhub) installs it and
starts one ``jupyterhub-singleuser`` per user from its venv, with the environment
``spawn_env`` builds. The venv comes from ``docker/workspace/requirements.txt``
(the single-user image's pins), plus this checkout editable (``--no-deps``) for
the platform's library and its Elyra runtime (``skiff.pipelines``), plus that
runtime's default configuration, so a new user finds "Skiff Airflow" among
Elyra's runtimes without configuring anything.
"""

from __future__ import annotations

import os
from pathlib import Path

from skiff.native import installing
from skiff.native.context import Context
from skiff.pipelines import defaults
from skiff.services import airflow

NAME = "workspace"
# Elyra's processors in use: ours and Elyra's in-place "local" one. Elyra's own
# "airflow" (git + Kubernetes) and "kfp" runtimes stay installed but unused.
ELYRA_RUNTIMES = "local,skiff-airflow"


def venv(ctx: Context) -> Path:
    return ctx.venv(NAME)


def worker_image(ctx: Context) -> str:
    """The image pipeline nodes run in under Compose: the Airflow image as docker-compose.yml
    names it (``skiff/airflow:${SKIFF_IMAGE_TAG:-dev}``), so an exported pipeline runs on
    the image this machine built."""
    return f"skiff/airflow:{os.environ.get('SKIFF_IMAGE_TAG') or 'dev'}"


def install(ctx: Context) -> None:
    target = installing.venv(NAME, venv(ctx), ctx.root / "docker" / NAME / "requirements.txt")
    installing.checkout(NAME, target, ctx.root)
    written = defaults.install(target, worker_image=worker_image(ctx))
    installing.step(NAME, f"Elyra runtime configuration: {', '.join(str(p) for p in written)}")


def dag_folder(ctx: Context) -> Path:
    """Where submitted pipelines' DAG files go: inside the folder Airflow reads."""
    return airflow.dags_folder(ctx) / airflow.PIPELINES


# What the hub sets per person at each spawn, never from the platform's own.
PERSONAL = ("S3_ACCESS_KEY", "S3_SECRET_KEY")
# The platform's own logins in the tasks' environment that people's servers never get.
PLATFORM_ONLY = ("CASSANDRA_USERNAME", "CASSANDRA_PASSWORD")


def spawn_env(ctx: Context) -> dict[str, str]:
    """The environment of every user's server (JupyterHub adds the user's own names).

    What the notebooks read (the same as on the Airflow workers: MLflow, S3, Kafka,
    Cassandra, the model's name) and what the Skiff Airflow runtime reads: its
    default configuration refers to these names (``${SKIFF_AIRFLOW_URL}``...)
    rather than holding addresses or secrets.
    """
    s = ctx.settings
    env = airflow.task_env(ctx)
    # Not the platform's S3 keys: the hub gives each server its person's own
    # (compose/jupyterhub/jupyterhub_config.py, from the catalog).
    for name in (*PERSONAL, *PLATFORM_ONLY):
        del env[name]
    env.update({
        "S3_ENDPOINT_URL": s.s3_endpoint,
        # Links for people (the Elyra dialog's "Run Details") and the API for programs.
        "SKIFF_AIRFLOW_URL": airflow.public_url(ctx),
        "SKIFF_AIRFLOW_API_URL": airflow.base_url(ctx),
        "SKIFF_DAG_FOLDER": str(dag_folder(ctx)),
        "SKIFF_PIPELINES_BUCKET": defaults.PIPELINES_BUCKET,
        "SKIFF_WORKER_IMAGE": worker_image(ctx),
        "ELYRA_PROCESSOR_RUNTIMES": ELYRA_RUNTIMES,
    })
    return env
