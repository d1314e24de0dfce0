"""Pipelines as Airflow DAG files and Compose files: generated from a spec, read by Airflow and Compose.

The DAG file is parsed by Airflow's own DagBag in the Airflow venv (a subprocess:
that venv is not this one); the Compose file is checked against the Compose
specification as docker-compose.yml is.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import compose_spec
import pytest
import yaml

from skiff.native.context import Context
from skiff.pipelines import compose, dag
from skiff.pipelines.spec import (
    NodeSpec,
    Parameter,
    PipelineSpec,
    Resources,
    SpecError,
    check_schedule,
    identifier,
)

pytestmark = pytest.mark.unit

PREFIX = "alice__bracelet/20260105T101500Z-abc123"


def node(name: str, **kwargs: Any) -> NodeSpec:
    values: dict[str, Any] = {
        "name": name, "label": name, "kind": "notebook", "filename": f"{name}.ipynb",
        "bucket": "pipelines", "prefix": PREFIX, "archive": f"{name}.tar.gz", "owner": "alice",
        "pipeline": "alice__bracelet",
    }
    values.update(kwargs)
    return NodeSpec(**values)


def pipeline(**kwargs: Any) -> PipelineSpec:
    values: dict[str, Any] = {
        "dag_id": "alice__bracelet", "name": "bracelet", "source": "bracelet.pipeline", "owner": "alice",
        "submission": "20260105T101500Z-abc123", "submitted_at": "2026-01-05T10:15:00+00:00",
        "bucket": "pipelines", "prefix": PREFIX, "worker_image": "skiff/airflow:3.3.2",
        "schedule": "0 3 * * *",
        "parameters": [Parameter("model_family", "String", "logistic_regression", "the classifier"),
                       Parameter("seed", "Integer", 42),
                       Parameter("threshold", "Float", None),
                       Parameter("fast", "Bool", "true")],
        "nodes": [
            node("prepare", kind="python", filename="prepare.py", outputs=["rows.csv"],
                 env={"SITES": "hungary"}, resources=Resources(cpu=2, memory_gb=2)),
            node("train", parameters=["model_family", "seed"], inputs=["rows.csv"], upstream=["prepare"],
                 env={"data_source": "rows.csv"}, resources=Resources(memory_gb=10, gpu=1)),
            node("report", parameters=["fast"], upstream=["train", "prepare"], doc="Sends the report"),
        ],
    }
    values.update(kwargs)
    return PipelineSpec(**values)


# --- the spec ---

def test_resource_requests_map_to_pool_slots_and_the_gpu_queue() -> None:
    assert Resources().airflow_args() == {"pool_slots": 1}
    assert Resources(cpu=2.5, memory_gb=2).airflow_args() == {"pool_slots": 3}
    assert Resources(cpu=1, memory_gb=10).airflow_args() == {"pool_slots": 3}  # 4 GB a slot
    assert Resources(gpu=1).airflow_args() == {"pool_slots": 1, "queue": "gpu"}


@pytest.mark.parametrize("schedule", ["0 3 * * *", "*/15 * * * MON-FRI", "@daily", "  0  3 * * *  "])
def test_schedules_are_cron_expressions_or_presets(schedule: str) -> None:
    assert check_schedule(schedule) == " ".join(schedule.split())


@pytest.mark.parametrize("schedule", ["every day", "0 3 * *", "@sometimes", "0 3 * * * * *"])
def test_other_schedules_are_refused_with_an_example(schedule: str) -> None:
    with pytest.raises(SpecError, match=r"cron|preset"):
        check_schedule(schedule)


def test_no_schedule_means_only_when_triggered() -> None:
    assert check_schedule("") is None
    assert check_schedule(None) is None


def test_names_become_identifiers() -> None:
    assert identifier("Prepare data (v2)") == "Prepare_data_v2"
    assert identifier("2nd step") == "n_2nd_step"
    assert identifier("alice@example.org") == "alice_example_org"
    with pytest.raises(SpecError):
        identifier("--")


def test_a_node_after_an_unknown_node_or_a_cycle_is_refused() -> None:
    with pytest.raises(SpecError, match="unknown nodes"):
        pipeline(nodes=[node("a", upstream=["ghost"])])
    cyclic = pipeline(nodes=[node("a", upstream=["b"]), node("b", upstream=["a"])])
    with pytest.raises(SpecError, match="cycle"):
        cyclic.in_order()


def test_a_node_taking_an_undefined_parameter_is_refused() -> None:
    with pytest.raises(SpecError, match="does not define"):
        pipeline(nodes=[node("a", parameters=["nope"])])


def test_node_specs_survive_json() -> None:
    original = pipeline().nodes[1]
    assert NodeSpec.from_json(json.dumps(original.to_json())) == original
    with pytest.raises(SpecError, match="unknown fields"):
        NodeSpec.from_json({**original.to_json(), "extra": 1})


# --- the DAG file ---

def _assigned_literal(source: str, name: str) -> Any:
    for statement in ast.parse(source).body:
        if isinstance(statement, ast.Assign) and getattr(statement.targets[0], "id", None) == name:
            return ast.literal_eval(statement.value)
    raise AssertionError(f"{name} is not assigned in the DAG file")


def test_the_dag_file_imports_only_airflow_sdk_and_the_runner() -> None:
    tree = ast.parse(dag.render(pipeline()))
    imported = set()
    for statement in ast.walk(tree):
        if isinstance(statement, ast.Import):
            imported |= {a.name for a in statement.names}
        elif isinstance(statement, ast.ImportFrom):
            imported.add(statement.module)
    assert imported == {"__future__", "datetime", "airflow.sdk", "skiff.pipelines"}


def test_the_dag_file_carries_every_node_spec() -> None:
    spec = pipeline()
    nodes = _assigned_literal(dag.render(spec), "NODES")
    assert list(nodes) == ["prepare", "train", "report"]
    assert [NodeSpec.from_json(nodes[n.name]) for n in spec.nodes] == spec.nodes


@pytest.fixture(scope="module")
def airflow_python() -> Path:
    python = Context.discover(Path(__file__).parent).venv("airflow") / "bin" / "python"
    if not python.exists():
        pytest.skip(f"no Airflow venv at {python} (`skiff install airflow`)")
    return python


DAGBAG = """
import json, sys
from airflow.dag_processing.dagbag import DagBag

bag = DagBag(dag_folder=sys.argv[1], safe_mode=False)
out = {"errors": {str(k): str(v) for k, v in bag.import_errors.items()}, "dags": {}}
for dag_id, dag in bag.dags.items():
    out["dags"][dag_id] = {
        "timetable": type(dag.timetable).__name__,
        "cron": getattr(dag.timetable, "expression", None),
        "owner": dag.owner,
        "params": {k: dag.params.get_param(k).resolve(suppress_exception=True) for k in dag.params},
        "param_schemas": {k: dag.params.get_param(k).schema for k in dag.params},
        "tags": sorted(dag.tags),
        "catchup": dag.catchup,
        "tasks": {t.task_id: {"upstream": sorted(t.upstream_task_ids), "pool_slots": t.pool_slots,
                              "queue": t.queue, "owner": t.owner, "doc": t.doc_md}
                  for t in dag.tasks},
    }
print(json.dumps(out))
"""


def _parse_with_airflow(python: Path, path: Path) -> dict[str, Any]:
    done = subprocess.run([str(python), "-c", DAGBAG, str(path)], capture_output=True, text=True,
                          timeout=180, cwd=path.parent,
                          env={"AIRFLOW_HOME": str(path.parent / "airflow-home"),
                               "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_airflow_reads_the_dag_file(airflow_python: Path, tmp_path: Path) -> None:
    path = tmp_path / "bracelet.py"
    path.write_text(dag.render(pipeline()))
    parsed = _parse_with_airflow(airflow_python, path)
    assert parsed["errors"] == {}
    found = parsed["dags"]["alice__bracelet"]
    assert found["cron"] == "0 3 * * *"
    assert found["catchup"] is False
    assert found["owner"] == "alice"
    assert "owner:alice" in found["tags"]
    assert found["params"] == {"model_family": "logistic_regression", "seed": 42, "threshold": None,
                               "fast": True}
    assert found["param_schemas"]["seed"]["type"] == "integer"
    assert found["param_schemas"]["threshold"]["type"] == ["null", "number"]
    tasks = found["tasks"]
    assert {t: v["upstream"] for t, v in tasks.items()} == {
        "prepare": [], "train": ["prepare"], "report": ["prepare", "train"]}
    assert (tasks["prepare"]["pool_slots"], tasks["prepare"]["queue"]) == (2, "default")
    assert (tasks["train"]["pool_slots"], tasks["train"]["queue"]) == (3, "gpu")
    assert tasks["report"]["doc"] == "Sends the report"
    assert {v["owner"] for v in tasks.values()} == {"alice"}


def test_a_pipeline_without_schedule_runs_when_triggered(airflow_python: Path, tmp_path: Path) -> None:
    path = tmp_path / "manual.py"
    path.write_text(dag.render(pipeline(schedule=None)))
    found = _parse_with_airflow(airflow_python, path)["dags"]["alice__bracelet"]
    assert found["timetable"] == "NullTimetable"


def test_odd_labels_and_descriptions_still_make_valid_python(tmp_path: Path) -> None:
    spec = pipeline(name='say """hi"""\\', description="it's \"quoted\"\n",
                    nodes=[node("a", label='a """ label \\', filename='x"""y.ipynb')])
    compile(dag.render(spec), "odd.py", "exec")


# --- the Compose file ---

def _interpolate(text: str, values: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error} substitution, then $$."""

    def one(match: re.Match[str]) -> str:
        name, op, rest = match.group(1), match.group(2), match.group(3)
        if values.get(name):
            return values[name]
        if op == ":?":
            raise AssertionError(f"${{{name}}} is required: {rest}")
        assert op == ":-", f"${{{name}}} has no value and no default"
        return rest

    text = re.sub(r"(?<!\$)\$\{([A-Z0-9_]+)(?:(:[-?])([^}]*))?\}", one, text)
    return text.replace("$$", "$")


def _env_values(root: Path) -> dict[str, str]:
    from skiff.envfile import parse

    return {k: v or "generated-secret" for k, v in parse((root / ".env.example").read_text()).items()}


def test_the_compose_export_follows_the_compose_specification(root: Path) -> None:
    text = _interpolate(compose.render(pipeline()), _env_values(root))
    document = compose_spec.PyCompose.from_json(json.dumps(yaml.safe_load(text)))
    document.validate()


def test_the_compose_export_runs_each_node_once_in_order(root: Path) -> None:
    spec = pipeline()
    doc = yaml.safe_load(_interpolate(compose.render(spec), _env_values(root)))
    services = doc["services"]
    assert list(services) == ["prepare", "train", "report"]
    for name, service in services.items():
        assert service["image"] == "skiff/airflow:3.3.2"
        assert service["entrypoint"] == ["python", "-m", "skiff.pipelines.runner"]
        assert service["restart"] == "no"
        command = service["command"]
        node_json = json.loads(command[command.index("--node-json") + 1])
        assert NodeSpec.from_json(node_json) == next(n for n in spec.nodes if n.name == name)
        env = service["environment"]
        assert env["S3_ACCESS_KEY"] == "generated-secret"
        assert env["MLFLOW_TRACKING_URI"].startswith("http://mlflow:5000")
    assert services["prepare"].get("depends_on") is None
    assert services["report"]["depends_on"] == {
        "train": {"condition": "service_completed_successfully"},
        "prepare": {"condition": "service_completed_successfully"}}
    train_params = services["train"]["command"][services["train"]["command"].index("--params-json") + 1]
    assert json.loads(train_params) == {"model_family": "logistic_regression", "seed": 42}
    assert doc["networks"]["skiff"] == {"name": "skiff_default", "external": True}


def test_the_compose_export_holds_no_secret_and_escapes_dollars(root: Path) -> None:
    spec = pipeline(nodes=[node("a", env={"PRICE": "$5", "HOME_DIR": "${HOME}"})])
    text = compose.render(spec)
    assert "generated-secret" not in text
    doc = yaml.safe_load(_interpolate(text, _env_values(root)))
    command = doc["services"]["a"]["command"]
    assert json.loads(command[1])["env"] == {"PRICE": "$5", "HOME_DIR": "${HOME}"}
