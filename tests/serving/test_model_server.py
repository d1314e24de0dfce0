"""The model server on the real stack: predictions, bad input, capture to Kafka, swap.

If no ``MODEL_NAME@MODEL_ALIAS`` exists yet the tests register a stand-in model
the way the training notebook does (register_model.py, in the serving-test venv).
A champion that someone else registered is used as it is and never moved: the
swap test only runs when the champion is one of these tests' own models.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kafka import KafkaConsumer, TopicPartition

from serving.model_server.registry import Registry
from skiff import keycloak
from skiff.bracelet.events import TOPIC
from skiff.bracelet.features import NAMES
from skiff.keycloak import DeviceAuth
from skiff.native import installing
from skiff.native.context import Context
from skiff.services import REGISTRY, kafka, mlflow, model_server

pytestmark = pytest.mark.integration

TEST_EXPERIMENT = "bracelet-serving-tests"
RECORD: dict[str, Any] = {"age": 63, "sex": 1, "cp": 1, "trestbps": 145, "chol": 233, "fbs": 1,
                          "restecg": 2, "thalch": 150, "exang": 0, "oldpeak": 2.3, "slope": 3,
                          "ca": 0, "thal": 6}
SPARSE: dict[str, Any] = {**dict.fromkeys(NAMES), "age": 54, "sex": 0, "cp": 4}


@pytest.fixture(scope="module")
def server(stack: Context) -> Iterator[httpx.Client]:
    if "model-server" not in REGISTRY:
        pytest.skip("model-server is not in skiff.services.REGISTRY yet")
    # The model API takes device tokens from Keycloak, as the bracelets send them.
    with httpx.Client(base_url=model_server.url(stack), timeout=30,
                      auth=DeviceAuth(stack.settings)) as client:
        yield client


def register(ctx: Context, c: float = 1.0) -> str:
    """Register a stand-in model version and point the alias at it; returns its version."""
    venv = installing.venv("serving-test", ctx.venv("serving-test"),
                           ctx.root / "docker/serving/requirements-test.txt")
    s = ctx.settings
    done = subprocess.run(
        [str(venv / "bin/python"), str(Path(__file__).with_name("register_model.py")),
         "--tracking-uri", mlflow.tracking_uri(ctx), "--name", s.model_name, "--alias", s.model_alias,
         "--experiment", TEST_EXPERIMENT, "--c", str(c)],
        # Moving the alias needs a token (serving/mlflow_auth.py): the platform's, for this script.
        env={**os.environ, "PYTHONPATH": str(ctx.root / "src"), "MLFLOW_DISABLE_TELEMETRY": "true",
             "MLFLOW_TRACKING_TOKEN": keycloak.service_token(s)},
        capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return str(json.loads(done.stdout.strip().splitlines()[-1])["version"])


def wait_ready(client: httpx.Client, version: str, ctx: Context,
               timeout: float | None = None) -> dict[str, Any]:
    deadline = time.monotonic() + (timeout or 4 * ctx.settings.model_refresh_seconds + 30)
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        resp = client.get("/readyz")
        body = resp.json()
        # Both workers refresh on their own: ask a few times so either may answer.
        if resp.status_code == 200 and body["model"]["version"] == version:
            return body
        time.sleep(0.5)
    raise AssertionError(f"/readyz never reported version {version}: {body}")


def owned_by_tests(ctx: Context, version: str) -> bool:
    """Whether this version was registered by these tests (its run is in their experiment)."""
    s = ctx.settings
    api = f"{mlflow.tracking_uri(ctx)}/api/2.0/mlflow"
    mv = httpx.get(f"{api}/model-versions/get", params={"name": s.model_name, "version": version}).json()
    run = httpx.get(f"{api}/runs/get", params={"run_id": mv["model_version"]["run_id"]}).json()
    exp = httpx.get(f"{api}/experiments/get-by-name", params={"experiment_name": TEST_EXPERIMENT})
    return exp.status_code == 200 and (
        run["run"]["info"]["experiment_id"] == exp.json()["experiment"]["experiment_id"])


@pytest.fixture(scope="module")
def served(stack: Context, server: httpx.Client) -> str:
    """The version being served, registering a stand-in model if there is none."""
    s = stack.settings
    registry = Registry(mlflow.tracking_uri(stack))
    try:
        mv = registry.resolve(s.model_name, s.model_alias)
        if mv is None:
            register(stack)
        # On a fresh stack the nightly training's catch-up run may register and promote
        # its own version while ours registers: serve whichever holds the alias once
        # the server has caught up with it, asking the registry again each time.
        deadline = time.monotonic() + 4 * s.model_refresh_seconds + 60
        while True:
            current = registry.resolve(s.model_name, s.model_alias)
            assert current is not None, f"{s.model_name}@{s.model_alias} vanished"
            try:
                wait_ready(server, current.version, stack, timeout=2 * s.model_refresh_seconds + 5)
                return current.version
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
    finally:
        registry.close()


def events(ctx: Context, request_ids: set[str], start: dict[int, int] | None = None,
           timeout: float = 30) -> dict[str, list[dict[str, Any]]]:
    """The capture events of these request ids, read from ``start`` offsets (default: beginning)."""
    consumer = KafkaConsumer(bootstrap_servers=kafka.bootstrap_servers(ctx), enable_auto_commit=False,
                             consumer_timeout_ms=1000)
    parts = [TopicPartition(TOPIC, p) for p in sorted(consumer.partitions_for_topic(TOPIC))]
    consumer.assign(parts)
    for tp in parts:
        if start is None:
            consumer.seek_to_beginning(tp)
        else:
            consumer.seek(tp, start[tp.partition])
    found: dict[str, list[dict[str, Any]]] = {}
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not request_ids <= set(found):
            for msg in consumer:
                try:
                    event = json.loads(msg.value)
                    request_id = event["request_id"]
                except (ValueError, TypeError, KeyError):
                    continue  # other tests publish garbage on purpose (dead-letter tests)
                if request_id in request_ids:
                    assert msg.key == request_id.encode(), "captured under another key"
                    found.setdefault(request_id, []).append(event)
    finally:
        consumer.close()
    return found


def end_offsets(ctx: Context) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=kafka.bootstrap_servers(ctx))
    try:
        parts = [TopicPartition(TOPIC, p) for p in consumer.partitions_for_topic(TOPIC)]
        return {tp.partition: off for tp, off in consumer.end_offsets(parts).items()}
    finally:
        consumer.close()


def predict(server: httpx.Client, doc: Any) -> httpx.Response:
    return server.post("/v1/predict", json=doc)


def test_healthz_answers(server: httpx.Client) -> None:
    assert server.get("/healthz").status_code == 200


def test_readyz_names_the_served_version(server: httpx.Client, served: str, stack: Context) -> None:
    resp = server.get("/readyz")
    assert resp.status_code == 200
    assert resp.json()["model"] == {"name": stack.settings.model_name, "version": served}


def test_one_record_is_predicted_and_captured(server: httpx.Client, served: str, stack: Context) -> None:
    resp = predict(server, RECORD)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["model"]["version"] == served
    [one] = body["predictions"]
    assert one["prediction"] in (0, 1) and 0 <= one["probability"] <= 1
    assert (body["request_id"], body["prediction"], body["probability"]) == (
        one["request_id"], one["prediction"], one["probability"])
    [event] = events(stack, {one["request_id"]})[one["request_id"]]
    assert event["type"] == "prediction" and event["model_version"] == served
    assert event["features"] == {k: float(v) for k, v in RECORD.items()}
    assert (event["prediction"], event["probability"]) == (one["prediction"], one["probability"])


@pytest.mark.parametrize("shape", ["list", "records"])
def test_a_batch_is_predicted_in_order(server: httpx.Client, served: str, shape: str) -> None:
    batch = [RECORD, SPARSE, {**RECORD, "age": 30}]
    resp = predict(server, batch if shape == "list" else {"records": batch})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert len(body["predictions"]) == 3 and "prediction" not in body
    assert len({p["request_id"] for p in body["predictions"]}) == 3


BAD = {
    "missing": ({k: v for k, v in RECORD.items() if k != "chol"}, 422, "chol"),
    "extra": ({**RECORD, "weight": 80}, 422, "weight"),
    "mistyped": ({**RECORD, "age": "sixty"}, 422, "age"),
    "out of range": ({**RECORD, "thalch": 400}, 422, "thalch"),
    "bad code": ({**RECORD, "cp": 9}, 422, "cp"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_an_invalid_record_is_422_with_its_field(server: httpx.Client, served: str, case: str) -> None:
    doc, status, field = BAD[case]
    resp = predict(server, [RECORD, doc])
    assert resp.status_code == status
    error = resp.json()["error"]
    assert error["code"] == "invalid_input" and list(error["fields"]) == ["1"]
    assert field in error["fields"]["1"]


@pytest.mark.parametrize("raw", [b"not json", b"", b"42", b'"text"', b"[]", b'{"records": 3}'])
def test_a_body_that_is_not_records_is_400(server: httpx.Client, raw: bytes) -> None:
    resp = server.post("/v1/predict", content=raw, headers={"content-type": "application/json"})
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "bad_request"


def _wait_published(server: httpx.Client, stack: Context) -> str:
    """Predict a marker record and wait for its event: everything spooled before it is on Kafka."""
    marker = predict(server, RECORD).json()["request_id"]
    assert events(stack, {marker}), "the marker prediction never reached Kafka"
    return str(marker)


def test_invalid_requests_are_not_captured(server: httpx.Client, served: str, stack: Context) -> None:
    _wait_published(server, stack)
    start = end_offsets(stack)
    # A value no one else sends marks the bad requests' records, should any be captured.
    marker = round(100 + random.random() * 100, 6)
    for doc, _, _ in BAD.values():
        assert predict(server, {**doc, "trestbps": marker}).status_code == 422
    assert server.post("/v1/predict", content=b"{nope").status_code == 400
    after = _wait_published(server, stack)
    # The spool publishes in order: once the marker is on Kafka, anything the bad
    # requests had spooled before it would be there too.
    consumer = KafkaConsumer(bootstrap_servers=kafka.bootstrap_servers(stack), enable_auto_commit=False,
                             consumer_timeout_ms=2000)
    parts = [TopicPartition(TOPIC, p) for p in start]
    consumer.assign(parts)
    for tp in parts:
        consumer.seek(tp, start[tp.partition])
    window = []
    for msg in consumer:
        try:
            window.append(json.loads(msg.value))
        except ValueError:
            continue
    consumer.close()
    assert after in {e.get("request_id") for e in window if isinstance(e, dict)}
    assert [e for e in window if isinstance(e, dict)
            and (e.get("features") or {}).get("trestbps") == marker] == []


def test_feedback_is_accepted_and_captured_under_the_request_id(server: httpx.Client, served: str,
                                                               stack: Context) -> None:
    request_id = predict(server, RECORD).json()["request_id"]
    resp = server.post("/v1/feedback", json={"request_id": request_id, "label": 1})
    assert resp.status_code == 202
    captured: list[dict[str, Any]] = []
    deadline = time.monotonic() + 30
    while len(captured) < 2 and time.monotonic() < deadline:
        captured = events(stack, {request_id}, timeout=5).get(request_id, [])
    assert [e["type"] for e in captured] == ["prediction", "label"]
    assert captured[1]["label"] == 1


def test_bad_feedback_is_rejected(server: httpx.Client) -> None:
    resp = server.post("/v1/feedback", json={"request_id": "nope", "label": 3})
    assert resp.status_code == 422
    assert set(resp.json()["error"]["fields"]) == {"request_id", "label"}
    assert server.post("/v1/feedback", content=b"[").status_code == 400


def test_metrics_count_requests_predictions_and_the_spool(server: httpx.Client, served: str) -> None:
    predict(server, RECORD)
    text = server.get("/metrics").text
    for name in ("skiff_model_server_requests_total", "skiff_model_server_request_duration_seconds_bucket",
                 f'skiff_model_server_predictions_total{{model_version="{served}"}}',
                 "skiff_model_server_publish_failures_total", "skiff_model_server_spool_depth"):
        assert name in text, name
    assert 'endpoint="/v1/predict",method="POST",status="422"' in text


def test_openapi_lists_every_feature(server: httpx.Client, served: str) -> None:
    doc = server.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    record = doc["components"]["schemas"]["Record"]
    assert list(record["properties"]) == list(NAMES) and len(NAMES) == 13


def test_a_new_version_is_served_without_a_restart(server: httpx.Client, served: str,
                                                   stack: Context) -> None:
    if not owned_by_tests(stack, served):
        pytest.skip("the champion was not registered by these tests; not moving it")
    new = register(stack, c=0.01)
    wait_ready(server, new, stack)
    deadline = time.monotonic() + 4 * stack.settings.model_refresh_seconds + 10
    seen: set[str] = set()
    while time.monotonic() < deadline and seen != {new}:
        # Several answers, so both workers have been asked.
        seen = {predict(server, RECORD).json()["model"]["version"] for _ in range(10)}
    assert seen == {new}
    assert uuid.UUID(predict(server, RECORD).json()["request_id"])
