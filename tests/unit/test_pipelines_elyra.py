"""The skiff-airflow runtime inside Elyra: registered, configured by default, turning pipelines into specs.

Elyra lives in the workspace venv, not in this one, so one probe script runs there
(a subprocess, no service needed: nothing is uploaded) and reports what Elyra's
own machinery did with our entry points and with the example pipeline of
user-workspace/pipelines/, the way the editor hands it over.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from skiff.native.context import Context
from skiff.pipelines import defaults

pytestmark = pytest.mark.unit

PROBE = r"""
import asyncio, copy, json, os, sys
from pathlib import Path

workspace = Path(sys.argv[1])
from elyra.metadata.manager import MetadataManager
from elyra.metadata.schema import SchemaManager
from elyra.pipeline.component_catalog import ComponentCache
from elyra.pipeline.parser import PipelineParser
from elyra.pipeline.processor import PipelineProcessorManager
from elyra.pipeline.runtime_type import RuntimeProcessorType, RuntimeTypeResources
from elyra.pipeline.validation import PipelineValidationManager

from skiff.pipelines.processor import RuntimeConfig, build_spec

out = {}
schema = SchemaManager.instance().get_schema("runtimes", "skiff-airflow")
out["schema"] = {"runtime_type": schema["runtime_type"], "name": schema["name"]}
config = MetadataManager(schemaspace="runtimes").get("skiff")
out["config"] = {"schema_name": config.schema_name, "display_name": config.display_name,
                 "metadata": config.metadata}
ppm = PipelineProcessorManager.instance(root_dir=str(workspace))
processor = ppm.get_processor_for_runtime("skiff-airflow")
out["processor"] = f"{type(processor).__module__}.{type(processor).__name__}"
out["processors"] = sorted(p.name for p in ppm.get_all_processors())
out["parameter_class"] = ppm.get_pipeline_parameter_class(RuntimeProcessorType.APACHE_AIRFLOW).__name__
out["export_formats"] = RuntimeTypeResources.get_instance_by_type(
    RuntimeProcessorType.APACHE_AIRFLOW).get_export_extensions()
cache = ComponentCache.instance(emulate_server_app=True)
cache.load()
cache.wait_for_all_cache_tasks()

source = workspace / "pipelines" / "bracelet_training.pipeline"
original = json.loads(source.read_text())


def submitted(change=None):
    # What the editor sends: paths relative to the workspace, runtime and config set.
    doc = copy.deepcopy(original)
    primary = doc["pipelines"][0]
    primary["app_data"].update(name=source.stem, source=source.name, runtime="skiff-airflow",
                               runtime_config="skiff")
    for node in primary["nodes"]:
        params = node["app_data"]["component_parameters"]
        params["filename"] = os.path.normpath(os.path.join("pipelines", params["filename"]))
    if change:
        change(doc)
    return doc


def attempt(doc):
    response = asyncio.run(PipelineValidationManager.instance(root_dir=str(workspace)).validate(doc))
    issues = [i["message"] for i in response.to_json()["issues"] if i["severity"] == 1]
    if response.has_fatal:
        return {"errors": issues}
    pipeline = PipelineParser(root_dir=str(workspace)).parse(doc)
    rc = RuntimeConfig.from_metadata("skiff", config.metadata)
    try:
        spec, sources = build_spec(pipeline, rc, root_dir=workspace, owner="alice")
    except ValueError as exc:
        return {"errors": [str(exc)]}
    return {"errors": [],
            "spec": {"dag_id": spec.dag_id, "schedule": spec.schedule, "owner": spec.owner,
                     "prefix": spec.prefix, "worker_image": spec.worker_image,
                     "parameters": [vars(p) for p in spec.parameters],
                     "nodes": [n.to_json() for n in spec.nodes]},
            "sources": {k: [str(v[0]), v[1], v[2]] for k, v in sources.items()}}


def schedule(value, where="pipeline"):
    def change(doc):
        primary = doc["pipelines"][0]
        if where == "pipeline":
            primary["app_data"]["properties"]["pipeline_defaults"]["skiff_schedule"] = value
        else:
            primary["nodes"][1]["app_data"]["component_parameters"]["skiff_schedule"] = value
    return change


def r_node(doc):
    node = doc["pipelines"][0]["nodes"][0]
    node["op"] = "execute-r-node"


out["example"] = attempt(submitted())
out["scheduled"] = attempt(submitted(schedule("0 4 * * *")))
out["bad_schedule"] = attempt(submitted(schedule("every night")))
out["two_schedules"] = attempt(submitted(lambda d: (schedule("0 4 * * *")(d),
                                                      schedule("0 5 * * *", "node")(d))))
out["r_node"] = attempt(submitted(r_node))
print("PROBE " + json.dumps(out, default=str))
sys.stdout.flush()
os._exit(0)  # Elyra's cache threads would keep the process alive
"""

ENV = {
    "SKIFF_AIRFLOW_URL": "https://localhost:8443/airflow",
    "SKIFF_DAG_FOLDER": "/srv/dags/pipelines",
    "S3_ENDPOINT_URL": "http://127.0.0.1:7070",
    "S3_ACCESS_KEY": "access",
    "S3_SECRET_KEY": "secret-key",
    "SKIFF_WORKER_IMAGE": "skiff/airflow:3.3.2",
    "ELYRA_PROCESSOR_RUNTIMES": "local,skiff-airflow",
}


@pytest.fixture(scope="module")
def probe(root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    python = Context.discover(root).venv("workspace") / "bin" / "python"
    if not python.exists():
        pytest.skip(f"no workspace venv at {python} (`skiff install jupyterhub`)")
    home = tmp_path_factory.mktemp("home")
    runtime = home / "runtime"
    runtime.mkdir()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
           "JUPYTER_RUNTIME_DIR": str(runtime), **ENV}
    done = subprocess.run([str(python), "-c", PROBE, str(root / "user-workspace")], capture_output=True,
                          text=True, timeout=300, env=env, cwd=root / "user-workspace")
    lines = [line for line in done.stdout.splitlines() if line.startswith("PROBE ")]
    assert done.returncode == 0 and lines, f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return dict(json.loads(lines[-1].removeprefix("PROBE ")))


def test_elyra_loads_our_processor_and_only_the_runtimes_we_enable(probe: dict[str, Any]) -> None:
    assert probe["processor"] == "skiff.pipelines.processor.SkiffAirflowProcessor"
    assert probe["processors"] == ["local", "skiff-airflow"]
    assert probe["parameter_class"] == "SkiffPipelineParameter"
    assert probe["export_formats"] == ["py", "yaml"]


def test_the_default_runtime_configuration_is_valid_and_holds_no_secret(probe: dict[str, Any]) -> None:
    assert probe["schema"] == {"runtime_type": "APACHE_AIRFLOW", "name": "skiff-airflow"}
    config = probe["config"]
    assert config["schema_name"] == "skiff-airflow"
    assert config["display_name"] == "Skiff Airflow"
    metadata = config["metadata"]
    assert metadata["cos_username"] == "${S3_ACCESS_KEY}"
    assert metadata["cos_password"] == "${S3_SECRET_KEY}"
    assert metadata == {**defaults.runtime_config()["metadata"], **metadata}


def test_the_example_pipeline_becomes_two_tasks(probe: dict[str, Any]) -> None:
    example = probe["example"]
    assert example["errors"] == []
    spec = example["spec"]
    assert spec["dag_id"] == "alice__bracelet_training"
    assert spec["owner"] == "alice"
    assert spec["schedule"] is None
    assert spec["worker_image"] == "skiff/airflow:3.3.2"
    assert [(p["name"], p["type"], p["default"]) for p in spec["parameters"]] == [
        ("extra_sites", "String", "hungary"), ("model_family", "String", "logistic_regression"),
        ("seed", "Integer", 42), ("model_name", "String", "bracelet-pipeline")]
    prepare, train = spec["nodes"]
    assert (prepare["name"], prepare["kind"], prepare["filename"]) == ("prepare_data", "python",
                                                                       "bracelet_prepare.py")
    assert prepare["outputs"] == ["bracelet_extra_rows.csv"]
    assert prepare["parameters"] == ["extra_sites"]
    assert (train["name"], train["kind"], train["filename"]) == ("train", "notebook", "bracelet_train.ipynb")
    assert train["upstream"] == ["prepare_data"]
    assert train["inputs"] == ["bracelet_extra_rows.csv"]  # the upstream output, Elyra's data passing
    assert train["env"] == {"data_source": "bracelet_extra_rows.csv", "experiment": "bracelet-pipelines"}
    assert train["parameters"] == ["model_family", "seed", "model_name"]
    assert train["resources"] == {"cpu": 1.0, "memory_gb": 2.0, "gpu": 0}
    assert {n["owner"] for n in spec["nodes"]} == {"alice"}
    assert prepare["prefix"].startswith("alice__bracelet_training/")
    folder, patterns, _ = example["sources"]["train"]
    assert folder.endswith("user-workspace/notebooks") and patterns == ["bracelet_train.ipynb"]


def test_the_schedule_is_a_pipeline_property(probe: dict[str, Any]) -> None:
    assert probe["scheduled"]["errors"] == []
    assert probe["scheduled"]["spec"]["schedule"] == "0 4 * * *"
    assert any("cron expression" in e for e in probe["bad_schedule"]["errors"])
    assert any("several schedules" in e for e in probe["two_schedules"]["errors"])


def test_r_scripts_are_refused_with_the_reason(probe: dict[str, Any]) -> None:
    assert any("no R" in e for e in probe["r_node"]["errors"]), probe["r_node"]
