"""Online features and the model download on the real stack: Ignite, Airflow, the model server.

Profiles are loaded by the load_profiles DAG (triggered over Airflow's REST API), then
requests that carry only a patient id are answered from them. The download of the
served ONNX file is checked against the registry's artifact and against the
server's own predictions (onnxruntime in the serving venv).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pyignite import Client

from serving.model_server.registry import Registry
from skiff import airflow_api
from skiff.bracelet import profiles
from skiff.bracelet.features import NAMES
from skiff.native import launcher
from skiff.native.context import Context
from skiff.services import REGISTRY, ignite, mlflow
from tests.serving.test_model_server import events, served, server  # noqa: F401 (fixtures)

pytestmark = pytest.mark.integration

DAG = "load_profiles"
# Patient 1 of the UCI data (Cleveland): every feature measured.
PATIENT = "1"


@pytest.fixture(scope="module")
def ignite_client(stack: Context) -> Iterator[Client]:
    if "ignite" not in REGISTRY:
        pytest.skip("ignite is not in skiff.services.REGISTRY")
    s = stack.settings
    client = ignite.connect(s.host("ignite"), s.ignite_port, s.ignite_password.get_secret_value())
    yield client
    client.close()


@pytest.fixture(scope="module")
def loaded(stack: Context, ignite_client: Client) -> dict[str, Any]:
    """The DAG's result after one run that loads every site's patients."""
    api = airflow_api.client(stack)
    run_id = airflow_api.trigger(api, DAG, {"sites": ["cleveland", "hungary", "switzerland", "va"]})
    state = airflow_api.wait_run(api, DAG, run_id, timeout=600)
    assert state == "success", f"{DAG} run {run_id} ended {state}: see `skiff logs airflow-scheduler`"
    return airflow_api.xcom(api, DAG, run_id, "load")


def full_record(pid: str) -> dict[str, Any]:
    return dict(profiles.dataset_profiles()[pid])


def test_the_dag_loads_every_patient_into_ignite(loaded: dict[str, Any], ignite_client: Client) -> None:
    assert (loaded["cache"], loaded["stored"], loaded["rejected"]) == (profiles.CACHE, 920, 0)
    cache = ignite_client.get_cache(profiles.CACHE)
    assert cache.get_size() >= 920
    assert profiles.decode(cache.get(PATIENT)) == full_record(PATIENT)


def test_ignite_refuses_clients_that_do_not_sign_in(stack: Context) -> None:
    s = stack.settings
    for password in (None, ignite.DEFAULT_PASSWORD):
        client = Client(username="ignite" if password else None, password=password, use_ssl=False,
                        partition_aware=False, timeout=5)
        with pytest.raises(Exception) as caught:
            client.connect(s.host("ignite"), s.ignite_port)
            client.get_cache_names()
        client.close()
        assert "password" in str(caught.value).lower() or "authent" in str(caught.value).lower(), \
            caught.value


def test_an_id_alone_gets_the_prediction_of_the_full_record(
        server: httpx.Client, served: str, loaded: dict[str, Any], stack: Context) -> None:  # noqa: F811
    by_id = server.post("/v1/predict", json={"patient_id": PATIENT})
    assert by_id.status_code == 200, by_id.text
    full = server.post("/v1/predict", json=full_record(PATIENT))
    assert full.status_code == 200, full.text
    a, b = by_id.json(), full.json()
    assert a["model"] == b["model"]
    assert (a["prediction"], a["probability"]) == (b["prediction"], b["probability"])
    # The capture holds what the model saw: the filled record, not the bare id.
    [event] = events(stack, {a["request_id"]})[a["request_id"]]
    assert event["features"] == full_record(PATIENT)


def test_request_vitals_win_over_the_profile(server: httpx.Client, served: str,  # noqa: F811
                                             loaded: dict[str, Any]) -> None:
    vitals = {"trestbps": 180, "thalch": 95, "exang": 1, "oldpeak": 4.0}
    mixed = server.post("/v1/predict", json={"records": [{"patient_id": PATIENT, **vitals}]})
    full = server.post("/v1/predict", json={"records": [{**full_record(PATIENT), **vitals}]})
    assert mixed.status_code == full.status_code == 200, (mixed.text, full.text)
    [a], [b] = mixed.json()["predictions"], full.json()["predictions"]
    assert (a["prediction"], a["probability"]) == (b["prediction"], b["probability"])


def test_an_unknown_id_is_a_404_naming_it(server: httpx.Client, served: str,  # noqa: F811
                                          loaded: dict[str, Any]) -> None:
    resp = server.post("/v1/predict", json=[{"patient_id": PATIENT}, {"patient_id": "no-such-patient"}])
    assert resp.status_code == 404, resp.text
    error = resp.json()["error"]
    assert error["code"] == "unknown_patient" and "no-such-patient" in error["message"]
    assert error["fields"] == {"1": {"patient_id": "no profile for patient 'no-such-patient'"}}


def test_a_malformed_id_is_a_422(server: httpx.Client, served: str) -> None:  # noqa: F811
    resp = server.post("/v1/predict", json={"patient_id": 1})
    assert resp.status_code == 422, resp.text
    assert "patient_id" in resp.json()["error"]["fields"]["0"]


def test_the_model_download_is_the_registered_file(server: httpx.Client, served: str,  # noqa: F811
                                                   stack: Context) -> None:
    info = server.get("/v1/model")
    assert info.status_code == 200, info.text
    described = info.json()
    resp = server.get("/v1/model/onnx")
    assert resp.status_code == 200, resp.text
    version = resp.headers["X-Model-Version"]
    digest = hashlib.sha256(resp.content).hexdigest()
    assert resp.headers["ETag"] == f'"{digest}"'
    if described["version"] == version:
        assert described["onnx"]["sha256"] == digest
    assert described["input"]["columns"] == list(NAMES)

    registry = Registry(mlflow.tracking_uri(stack))
    try:
        uri = registry.download_uri(stack.settings.model_name, version)
        artifact = registry.artifact(uri, described["onnx"]["file"])
    finally:
        registry.close()
    assert hashlib.sha256(artifact).hexdigest() == digest

    unchanged = server.get("/v1/model/onnx", headers={"If-None-Match": resp.headers["ETag"]})
    assert unchanged.status_code == 304 and unchanged.content == b""


def test_the_downloaded_model_predicts_what_the_server_predicts(
        server: httpx.Client, served: str, stack: Context, tmp_path: Path) -> None:  # noqa: F811
    rows = [full_record(pid) for pid in ("1", "2", "3", "400", "700")]
    answer = server.post("/v1/predict", json=rows)
    assert answer.status_code == 200, answer.text
    resp = server.get("/v1/model/onnx")
    if resp.headers["X-Model-Version"] != answer.json()["model"]["version"]:
        pytest.skip("the champion changed between the two requests; run again")
    model = tmp_path / "model.onnx"
    model.write_bytes(resp.content)
    # onnxruntime as a device would run it: the serving venv has it, this one does not.
    script = (
        "import json, sys, math, numpy as np, onnxruntime as ort\n"
        "names, rows = json.loads(sys.stdin.read())\n"
        "x = np.array([[math.nan if r[n] is None else r[n] for n in names] for r in rows], np.float32)\n"
        "s = ort.InferenceSession(sys.argv[1], providers=['CPUExecutionProvider'])\n"
        "labels, probs = s.run(['label', 'probabilities'], {'features': x})\n"
        "print(json.dumps([[int(a), float(p[1])] for a, p in zip(labels, probs)]))\n")
    done = subprocess.run([str(stack.venv("serving") / "bin" / "python"), "-c", script, str(model)],
                          input=json.dumps([list(NAMES), rows]), capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    local = [tuple(pair) for pair in json.loads(done.stdout)]
    remote = [(p["prediction"], p["probability"]) for p in answer.json()["predictions"]]
    assert local == remote


def test_without_ignite_an_id_is_a_503_and_the_server_recovers(
        server: httpx.Client, served: str, loaded: dict[str, Any], stack: Context) -> None:  # noqa: F811
    if os.environ.get("SKIFF_TEST_MODE") == "compose":
        pytest.skip("stops and starts the native ignite service")
    launcher.down(stack, ["ignite"])
    try:
        down = server.post("/v1/predict", json={"patient_id": PATIENT})
        assert down.status_code == 503, down.text
        assert down.json()["error"]["code"] == "profiles_unavailable"
        assert "Ignite at" in down.json()["error"]["message"]
        # A full record needs no profile and is still served.
        assert server.post("/v1/predict", json=full_record(PATIENT)).status_code == 200
    finally:
        launcher.up(stack, ["ignite"])
    # Every worker thread reconnects on its next lookup; no restart of the server.
    for _ in range(8):
        again = server.post("/v1/predict", json={"patient_id": PATIENT})
        assert again.status_code == 200, again.text
