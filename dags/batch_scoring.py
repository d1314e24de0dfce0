"""Score a CSV in the S3 store with a registered model on Spark: ``skiff score`` as a DAG.

Trigger with a conf: ``{"input": "s3://bucket/file.csv", "model": "bracelet@champion",
"out": "s3://bucket/path"}``. ``check`` refuses a missing input, an unknown
model or alias and an output path that already holds results before Spark is
asked; ``score`` sends the job to Spark Connect (``skiff.scoring.job``: this
venv needs no Java) and returns what it wrote, the counts and the MLflow run.
Its lineage (input CSV and model version -> scored and rejected rows) goes to the
catalog (skiff.catalog.scoring; CATALOG_URL).

Environment (airflow_env natively, docker-compose.yml in Compose): SPARK_REMOTE
(Spark Connect's address and token; natively, without it, read from this
checkout's .env), MLFLOW_TRACKING_URI, S3_HOST/PORT/ACCESS_KEY/
SECRET_KEY/REGION.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from datetime import datetime
from typing import Any

from airflow.sdk import Param, dag, get_current_context, task


def _s3():
    from skiff.services.s3 import client

    endpoint = f"http://{os.environ.get('S3_HOST', '127.0.0.1')}:{os.environ.get('S3_PORT', '7070')}"
    return client(endpoint, os.environ["S3_ACCESS_KEY"], os.environ["S3_SECRET_KEY"],
                  os.environ.get("S3_REGION", "us-east-1"))


def _native_remote() -> str:
    """Spark Connect's address and token from this checkout's settings (native mode, where
    Airflow's environment does not carry SPARK_REMOTE; Compose sets it)."""
    from pathlib import Path

    from skiff.native.context import Context
    from skiff.services import spark

    return spark.client_remote(Context.discover(Path(__file__).resolve().parent))


def _tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000/mlflow")


@dag(
    dag_id="batch_scoring",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=2,
    tags=["scoring", "spark"],
    params={
        "input": Param("", type="string", description="s3://bucket/key of the CSV to score"),
        "model": Param(f"{os.environ.get('MODEL_NAME', 'bracelet')}@"
                       f"{os.environ.get('MODEL_ALIAS', 'champion')}", type="string",
                       description="NAME@ALIAS of the registered model"),
        "out": Param("", type="string",
                     description="s3://bucket/path: outcome=scored/ and outcome=rejected/ go under it"),
    },
    doc_md=__doc__,
)
def batch_scoring() -> None:
    @task
    def check() -> dict[str, str]:
        from skiff.scoring.locations import S3Location
        from skiff.scoring.model import resolve
        from skiff.scoring.store import check_input, check_output

        params = get_current_context()["params"]
        source = S3Location.parse(params["input"], "input")
        out = S3Location.parse(params["out"], "out")
        mv = resolve(_tracking_uri(), params["model"])
        client = _s3()
        check_input(client, source)
        check_output(client, out)
        return {"input": source.uri, "out": out.uri, "model": params["model"], "version": mv.version}

    @task
    def score(checked: dict[str, str]) -> dict[str, Any]:
        from skiff.catalog.scoring import scoring_lineage
        from skiff.scoring import job

        remote = os.environ.get("SPARK_REMOTE") or _native_remote()
        result = job.run(remote, _tracking_uri(), checked["model"], checked["input"], checked["out"])
        context = get_current_context()
        scoring_lineage(context, context["params"], asdict(result))
        return asdict(result)

    score(check())


batch_scoring()
