"""A monitoring run's platform events (skiff.events): status, metrics, and the drift alert.

The monitoring DAG's run is the events' run (``model_monitoring/<run id>``, from
Airflow's task environment; workflow ``model_monitoring``), so the console shows a
monitoring run like any other and its readers are those of the workflow. Per run:

- ``status`` running, when the window and the version are known (task resolve);
- ``metrics``: every value logged to MLflow (drift.psi.<feature>, drift.p.<feature>,
  drift.alert, live.*), so the event and the MLflow run say the same;
- ``alert`` when a feature drifted: severity ``critical`` when at least half of the
  judged features drifted, ``warning`` otherwise; details name the model, window,
  drifted features with their PSI and p-value, the MLflow run, and the retraining
  requested (if any);
- ``status`` success (with the verdict) or failed (the failing task and its error).

MLflow is written first: it is the durable record. An event Kafka refuses raises
skiff.events.EventsError, which fails the task: a drift alert nobody receives must
not pass for a successful run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from skiff import events

# This share of the judged features or more drifted: the alert is critical.
CRITICAL_SHARE = 0.5


def _model(model: Mapping[str, Any]) -> str:
    return f"{model['model_name']} version {model['version']} ({model['alias']})"


def _window(window: Mapping[str, Any]) -> str:
    return f"{window['start']} .. {window['end']}"


def started(model: Mapping[str, Any], window: Mapping[str, Any], **ctx: Any) -> dict[str, Any]:
    return events.status("running", f"monitoring {_model(model)} on the window {_window(window)}", **ctx)


def severity(report: Mapping[str, Any]) -> str:
    judged = len(report["features"])
    drifted = len(report["drifted"])
    return "critical" if judged and drifted / judged >= CRITICAL_SHARE else "warning"


def alert_details(outcome: Mapping[str, Any], report: Mapping[str, Any],
                  retrain: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What the alert carries: enough to act on it without opening MLflow."""
    features = {f["name"]: f for f in report["features"]}
    return {
        "model": dict(outcome["model"]) | {"name": outcome["model"]["model_name"]},
        "window": dict(outcome["window"]),
        "drifted": {name: {"psi": features[name]["psi"], "p_value": features[name]["p_value"],
                           "test": features[name]["test"]}
                    for name in report["drifted"]},
        "judged_features": len(report["features"]),
        "mlflow_run_id": outcome["mlflow_run_id"],
        "live": {k.removeprefix("live."): v for k, v in outcome["metrics"].items() if k.startswith("live.")},
        "retrain": dict(retrain) if retrain else None,
    }


def verdict(outcome: Mapping[str, Any]) -> str:
    if outcome["status"] != "judged":
        rows = int(outcome["metrics"].get("live.rows", 0))
        return f"not judged: {rows} captured rows in the window, too few for a verdict"
    if outcome["drifted"]:
        return f"drift on {', '.join(outcome['drifted'])}"
    return "no drift"


def recorded(outcome: Mapping[str, Any], report: Mapping[str, Any] | None,
             retrain: Mapping[str, Any] | None = None, **ctx: Any) -> list[dict[str, Any]]:
    """The events of a recorded monitoring run (results.record's outcome); returns them as sent."""
    model, window = outcome["model"], outcome["window"]
    sent = [events.metrics(outcome["metrics"], title=f"{_model(model)}, window {_window(window)}", **ctx)]
    if report is not None and outcome["alert"]:
        message = (f"{_model(model)}: the captured requests drifted on {', '.join(report['drifted'])} "
                   f"in the window {_window(window)}")
        if retrain:
            message += f"; retraining requested (Airflow run {retrain['run_id']})"
        sent.append(events.alert(message, severity=severity(report),
                                 details=alert_details(outcome, report, retrain),
                                 title=f"Drift: {model['model_name']} version {model['version']}", **ctx))
    sent.append(events.status("success", verdict(outcome), **ctx))
    return sent


def failed(task: str, error: BaseException | str | None, **ctx: Any) -> dict[str, Any]:
    reason = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else str(error or "")
    return events.status("failed", f"task {task} failed" + (f": {reason}" if reason else ""), **ctx)
