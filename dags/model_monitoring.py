"""Monitor the served model: drift of the captured features, live quality: resolve -> measure -> record.

Every hour (no catch-up) the window of the last 24 hours of captured requests of
``model_name`` (Cassandra ``skiff.prediction_events``) is compared with the
training data of the version holding ``alias`` (skiff.monitoring.reference):
per feature a population stability index and a two-sample test
(skiff.monitoring.drift); where labels have arrived, the window's accuracy and
ROC AUC. Triggered by hand (REST API, UI) with params, any window can be checked.

Results (skiff.monitoring.results): one MLflow run per monitoring run in the
experiment ``monitoring`` (metrics drift.psi.<feature>, drift.p.<feature>,
drift.alert, live.rows, live.accuracy, live.roc_auc, timestamped at the window's
end), tags ``skiff.monitoring.last_run`` and ``skiff.monitoring.drifted`` on the
model version, and an alert (skiff.monitoring.results.emit_alert) when a feature
drifted. A window with fewer than ``min_rows`` rows is recorded (live.rows) but
not judged: the tests need a sample to say anything.

Platform events (skiff.monitoring.notify; run = this DAG run, workflow
model_monitoring): status running, then metrics, the drift alert, and status
success; status failed when a task fails. With ``retrain_on_alert`` an alert also
sends a training request (skiff.monitoring.retrain) that the training-trigger
service turns into a bracelet_training run, named in the alert.

Environment (airflow_env natively, docker-compose.yml in Compose):
MLFLOW_TRACKING_URI, CASSANDRA_HOST/PORT, S3_HOST/PORT/ACCESS_KEY/SECRET_KEY/REGION,
MODEL_NAME and MODEL_ALIAS (defaults "bracelet", "champion"), KAFKA_HOST/PORT (events,
training requests).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import Param, dag, get_current_context, task

# Fewer rows than this in a window: no verdict (drift.MIN_VALUES is the floor per feature).
MIN_ROWS = 30


def _failed(context: dict[str, Any]) -> None:
    """on_failure_callback: the run's failure as a status event, named after the task."""
    import logging

    from skiff import events, run_identity
    from skiff.monitoring import notify

    dag_run, task = context["dag_run"], context["task_instance"]
    try:
        # Explicit run and workflow: a callback's environment need not be the task's.
        notify.failed(task.task_id, context.get("exception"), run=f"{dag_run.dag_id}/{dag_run.run_id}",
                      workflow=dag_run.dag_id, step=task.task_id,
                      user=run_identity.started_by(dag_run, getattr(context.get("dag"), "owner", None)))
    except (events.EventsError, ValueError) as exc:  # the task has failed already: say why it is unannounced
        logging.getLogger("skiff.monitoring").error("could not send the failed status event: %s", exc)


@dag(
    dag_id="model_monitoring",
    description="Compare the captured requests of a window with the champion's training data "
                "(drift), and its live accuracy; log to MLflow, alert on drift",
    schedule="@hourly",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    # Runs are independent (each its own window), but two at once only compete for slots.
    max_active_runs=1,
    default_args={"retries": 0, "on_failure_callback": _failed},
    tags=["skiff", "monitoring"],
    params={
        "model_name": Param(os.environ.get("MODEL_NAME", "bracelet"), type="string",
                            description="registered model whose captured requests are monitored"),
        "alias": Param(os.environ.get("MODEL_ALIAS", "champion"), type="string",
                       description="the version holding this alias gives the reference data"),
        "window_start": Param("", type="string",
                              description="ISO 8601 start of the window (included); "
                                          "empty: 24 hours before its end"),
        "window_end": Param("", type="string",
                            description="ISO 8601 end of the window (excluded); empty: the run's "
                                        "data interval end, or now for a manual run"),
        "min_rows": Param(MIN_ROWS, type="integer", minimum=1,
                          description="fewer captured rows than this: recorded, not judged"),
        "retrain_on_alert": Param(False, type="boolean",
                                  description="on a drift alert, request a bracelet_training run "
                                              "(training-requests topic) with the captured labelled rows"),
    },
)
def model_monitoring():
    @task
    def resolve() -> dict[str, Any]:
        """The window and the monitored version (fails clearly when no version holds the alias)."""
        from mlflow.tracking import MlflowClient

        from skiff.monitoring import notify, reference, window

        context = get_current_context()
        params = context["params"]
        # A scheduled run watches the 24 hours up to its data interval's end, so a late
        # or re-run run still looks at its own hour; a manual run has none and uses now.
        now = context.get("data_interval_end") or datetime.now(UTC)
        span = window.resolve(params["window_start"], params["window_end"], now)
        client = MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
        version = reference.model_version(client, params["model_name"], params["alias"])
        target = {"model": version.as_json(), "window": span.as_json()}
        notify.started(target["model"], target["window"])
        return target

    @task
    def measure(target: dict[str, Any]) -> dict[str, Any]:
        """Read the window from Cassandra and the reference, compute drift and live quality."""
        from skiff.monitoring import drift, reference, window

        params = get_current_context()["params"]
        span = window.Window(datetime.fromisoformat(target["window"]["start"]),
                             datetime.fromisoformat(target["window"]["end"]))
        captured = window.read_window(target["model"]["model_name"], span)
        quality = drift.live_quality(captured.labels, captured.probabilities)
        result = {**target, "live_rows": len(captured.rows), "rejected_rows": captured.rejected,
                  "quality": quality, "report": None}
        if len(captured.rows) < int(params["min_rows"]):
            return {**result, "status": "too_few_rows"}
        ref_rows, ref_rejected = reference.training_rows(target["model"]["data_source"])
        report = drift.drift_report(ref_rows, captured.rows)
        return {**result, "status": "judged", "report": report.as_json(),
                "reference_rows": len(ref_rows), "reference_rejected": ref_rejected}

    @task
    def record(measured: dict[str, Any]) -> dict[str, Any]:
        """MLflow run, model version tags, and the alert when a feature drifted."""
        from mlflow.tracking import MlflowClient

        from skiff.monitoring import notify, results, retrain

        context = get_current_context()
        dag_run = context["dag_run"]
        client = MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
        outcome = results.record(
            client, measured["model"], measured["window"], measured["report"], measured["quality"],
            measured["live_rows"], measured["status"], run_name=f"{dag_run.dag_id}/{dag_run.run_id}",
            extra_tags={"skiff.airflow.dag_id": dag_run.dag_id, "skiff.airflow.run_id": dag_run.run_id})
        retraining = None
        if outcome["alert"] and context["params"]["retrain_on_alert"]:
            retraining = retrain.request(
                measured["model"]["model_name"],
                f"drift on {', '.join(outcome['drifted'])} in the window "
                f"{measured['window']['start']} .. {measured['window']['end']}",
                {"monitoring-run": f"{dag_run.dag_id}/{dag_run.run_id}",
                 "mlflow-run": outcome["mlflow_run_id"]})
        notify.recorded(outcome, measured["report"], retraining)
        return {**outcome, "rejected_rows": measured["rejected_rows"],
                "reference_rows": measured.get("reference_rows", 0), "retrain": retraining}

    record(measure(resolve()))


model_monitoring()
