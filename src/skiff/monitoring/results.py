"""Where a monitoring run's results go: MLflow time series, tags on the model version, alerts.

Each monitoring run is one MLflow run in the experiment ``monitoring``, tagged with
the model's name, version and alias; its metrics carry the window's end as their
timestamp, so the runs of one model read as time series (drift.psi.<feature>,
drift.p.<feature>, live.accuracy, live.roc_auc, live.rows, drift.alert). The model
version itself gets ``skiff.monitoring.last_run`` (the MLflow run id) and
``skiff.monitoring.drifted`` (the drifted features, comma-separated; "none"; or
"unjudged" when the window was too small),
so whoever looks at the registry sees the latest verdict without searching runs.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

EXPERIMENT = "monitoring"
TAG_MODEL = "skiff.model.name"
TAG_VERSION = "skiff.model.version"
TAG_ALIAS = "skiff.model.alias"
TAG_LAST_RUN = "skiff.monitoring.last_run"
TAG_DRIFTED = "skiff.monitoring.drifted"
TAG_ALERT = "skiff.monitoring.alert"
TAG_STATUS = "skiff.monitoring.status"
ALERT_ARTIFACT = "alert.json"
# skiff.monitoring.drifted after a run whose window had too few rows for a verdict.
UNJUDGED = "unjudged"

log = logging.getLogger("skiff.monitoring")


def metrics(report: Mapping[str, Any] | None, quality: Mapping[str, Any], live_rows: int) -> dict[str, float]:
    """The run's metrics from a drift report's JSON (None: not computed) and live quality.

    A metric that could not be computed (AUC with one class, accuracy with no label)
    is left out rather than logged as NaN: a gap in the chart, not a fake point.
    """
    out: dict[str, float] = {"live.rows": float(live_rows)}
    if report is not None:
        for feature in report["features"]:
            out[f"drift.psi.{feature['name']}"] = float(feature["psi"])
            out[f"drift.p.{feature['name']}"] = float(feature["p_value"])
        out["drift.alert"] = 1.0 if report["alert"] else 0.0
    for key in ("accuracy", "roc_auc"):
        value = quality.get(key)
        if value is not None and math.isfinite(float(value)):
            out[f"live.{key}"] = float(value)
    out["live.labelled_rows"] = float(quality.get("n") or 0)
    return out


def experiment_id(client: Any, name: str = EXPERIMENT) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    from mlflow.exceptions import MlflowException

    try:
        return str(client.create_experiment(name))
    except MlflowException:
        # Two monitoring runs created it at once: the other one won, use its experiment.
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return str(found.experiment_id)


def emit_alert(client: Any, run_id: str, model: Mapping[str, str], window: Mapping[str, str],
               report: Mapping[str, Any]) -> dict[str, Any]:
    """The one place a drift alert is recorded: logged, and on the monitoring run in MLflow.

    A tag, and the alert's body as ``alert.json``. The platform event that people
    receive (skiff.monitoring.notify.recorded) is sent once the whole run is
    recorded, with these facts and the drifted features' PSI and p-values.
    """
    alert = {"kind": "drift", "model_name": model["model_name"], "version": model["version"],
             "alias": model["alias"], "window": dict(window), "drifted": list(report["drifted"]),
             "mlflow_run_id": run_id}
    log.warning("drift alert: %s version %s (%s) drifted on %s in window %s .. %s (MLflow run %s)",
                alert["model_name"], alert["version"], alert["alias"], ", ".join(alert["drifted"]),
                window["start"], window["end"], run_id)
    client.set_tag(run_id, TAG_ALERT, "true")
    client.log_dict(run_id, alert, ALERT_ARTIFACT)
    return alert


def record(client: Any, model: Mapping[str, str], window: Mapping[str, str],
           report: Mapping[str, Any] | None, quality: Mapping[str, Any], live_rows: int,
           status: str, run_name: str, extra_tags: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Log one monitoring run to MLflow, tag the model version, alert if drifted; returns the result."""
    from mlflow.entities import Metric, Param

    tags = {TAG_MODEL: model["model_name"], TAG_VERSION: model["version"], TAG_ALIAS: model["alias"],
            TAG_STATUS: status, **(extra_tags or {})}
    run = client.create_run(experiment_id(client), tags=tags, run_name=run_name)
    run_id = run.info.run_id
    # The window's end is the point on the time axis: a run re-done later for an old
    # window lands where that window is, not at the time it was re-done.
    at_ms = int(datetime.fromisoformat(window["end"]).timestamp() * 1000)
    values = metrics(report, quality, live_rows)
    params = {"window_start": window["start"], "window_end": window["end"],
              "data_source": model.get("data_source", ""), "model_run_id": model.get("run_id", "")}
    try:
        client.log_batch(run_id, metrics=[Metric(k, v, at_ms, 0) for k, v in sorted(values.items())],
                         params=[Param(k, str(v)) for k, v in params.items()])
        if report is not None:
            client.log_dict(run_id, dict(report), "drift_report.json")
        alert = emit_alert(client, run_id, model, window, report) if report and report["alert"] else None
        drifted = list(report["drifted"]) if report else []
        client.set_model_version_tag(model["model_name"], model["version"], TAG_LAST_RUN, run_id)
        # "none" is a verdict; a window too small to judge must not read as one.
        verdict = ",".join(drifted) if drifted else "none" if report is not None else UNJUDGED
        client.set_model_version_tag(model["model_name"], model["version"], TAG_DRIFTED, verdict)
    except Exception:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id, status="FINISHED")
    return {"mlflow_run_id": run_id, "status": status, "alert": alert is not None,
            "drifted": drifted, "metrics": values, "model": dict(model), "window": dict(window)}
