"""The Kubernetes GPU example DAG (docs/examples): Airflow reads it, and its pod asks for a GPU."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from skiff.native.context import Context

pytestmark = pytest.mark.unit

EXAMPLE = "docs/examples/kubernetes_gpu_training.py"

# Parsed by Airflow's DagBag; the operator's resources rendered as the pod spec would be.
PARSE = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
from kubernetes.client import ApiClient

bag = DagBag(dag_folder=sys.argv[1], safe_mode=False)
out = {"errors": {str(k): str(v) for k, v in bag.import_errors.items()}, "dags": {}}
api = ApiClient()
for dag_id, dag in bag.dags.items():
    out["dags"][dag_id] = {
        t.task_id: {"operator": type(t).__name__, "schedule": str(dag.schedule),
                    "resources": api.sanitize_for_serialization(t.container_resources),
                    "tolerations": api.sanitize_for_serialization(t.tolerations)}
        for t in dag.tasks}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def parsed(root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    python = Context.discover(root).venv("airflow") / "bin" / "python"
    if not python.exists():
        pytest.skip(f"no Airflow venv at {python} (`skiff install airflow`)")
    home = tmp_path_factory.mktemp("airflow-home")
    done = subprocess.run([str(python), "-c", PARSE, str(root / EXAMPLE)], capture_output=True,
                          text=True, timeout=180, cwd=home,
                          env={"AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                               "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_airflow_reads_the_example_without_errors(parsed: dict[str, Any]) -> None:
    assert parsed["errors"] == {}
    assert set(parsed["dags"]) == {"bracelet_training_kubernetes_gpu"}


def test_the_training_pod_asks_for_one_nvidia_gpu(parsed: dict[str, Any]) -> None:
    train = parsed["dags"]["bracelet_training_kubernetes_gpu"]["train"]
    assert train["operator"] == "KubernetesPodOperator"
    assert train["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in train["tolerations"]
    # Only on demand: nothing schedules it on a cluster by itself.
    assert train["schedule"] == "None"


def test_the_example_is_not_in_the_dags_folder(root: Path) -> None:
    # Skiff's own Airflow has no cluster; it must not list a DAG that can only fail.
    assert not list((root / "dags").rglob("kubernetes_gpu_training.py"))
