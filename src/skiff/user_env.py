"""The environment user code gets: notebooks, pipeline nodes, the notebooks DAGs run.

Owned here, as names: the platform's services build the values
(skiff.services.airflow.task_env, skiff.services.workspace.spawn_env), and the
pipeline runner passes a node only these names of its worker's environment, an
allow-list, so whatever the worker itself holds (Airflow's database URL, Fernet
and JWT keys, its Keycloak client's secret, Redis' and Ignite's passwords) is not
in a person's code's environment, whatever is added to the worker later. It is no
isolation: the code still runs as the worker's OS user.
"""

from __future__ import annotations

from collections.abc import Mapping

# Where the platform's services are, and what the runs' events and models are called.
SERVICES = frozenset({
    "MLFLOW_TRACKING_URI", "MLFLOW_DISABLE_TELEMETRY",
    "KAFKA_HOST", "KAFKA_PORT", "CASSANDRA_HOST", "CASSANDRA_PORT",
    "S3_HOST", "S3_PORT", "S3_REGION", "S3_ENDPOINT_URL",
    "CATALOG_URL", "SKIFF_EVENTS_TOPIC", "SKIFF_EVENTS_BUCKET",
    "MODEL_NAME", "MODEL_ALIAS",
})
# The one platform credential user code still holds: Spark Connect's address with the
# shared token (a Spark credential per person is still to come, issue 15). S3 keys are
# not passed on: a node gets its owner's own (skiff.pipelines.runner), a notebook
# server its person's (the hub), never the platform's.
CREDENTIALS = frozenset({"SPARK_REMOTE"})
# What any process needs to run.
PROCESS = frozenset({
    "PATH", "HOME", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "HOSTNAME",
    "VIRTUAL_ENV", "JAVA_HOME", "PYTHONUNBUFFERED", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE",
    "LD_LIBRARY_PATH", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy",
    "no_proxy",
    # A node on the gpu queue's worker sees the GPUs the worker was given.
    "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES",
})
# Airflow's description of the running task (dag, run, task, owner): no secret.
PREFIXES = ("AIRFLOW_CTX_",)

NAMES = SERVICES | CREDENTIALS | PROCESS


def passed_on(environ: Mapping[str, str]) -> dict[str, str]:
    """The part of ``environ`` user code may see."""
    return {k: v for k, v in environ.items() if k in NAMES or k.startswith(PREFIXES)}
