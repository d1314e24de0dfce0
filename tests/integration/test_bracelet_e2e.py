"""The bracelet scenario end to end on the real stack: serve, capture, swap, survive.

Needs a champion: the first test module to run trains one through Airflow when
the registry has none (a few minutes), later runs reuse it.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from skiff import cassandra_access
from skiff.bracelet import demo
from skiff.bracelet import simulate as sim
from skiff.bracelet.features import encode_row, load_raw
from skiff.keycloak import DeviceAuth
from skiff.native.context import Context
from skiff.services import cassandra, mlflow

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def api(stack: Context) -> Iterator[httpx.Client]:
    # The model API takes device tokens from Keycloak, as the bracelets send them.
    with httpx.Client(base_url=demo.model_server_url(stack), timeout=30,
                      auth=DeviceAuth(stack.settings)) as client:
        yield client


def _rows(stack: Context, request_ids: list[str] | None, since: datetime) -> list[Any]:
    """The day's captured rows, of the given request ids (all when None), duplicates kept."""
    s = stack.settings
    cluster = cassandra.connect(stack, cassandra_access.READER, timeout=30)
    try:
        session = cluster.connect(cassandra.SCHEMA_KEYSPACE)
        day = since.strftime("%Y-%m-%d")
        rows = session.execute(
            "SELECT request_id, model_version, prediction, probability FROM prediction_events"
            " WHERE model_name = %s AND day = %s", (s.model_name, day))
        return [r for r in rows if request_ids is None or str(r.request_id) in set(request_ids)]
    finally:
        cluster.shutdown()


class Traffic:
    """Simulated devices in a background thread; ``wait_ok(n)`` awaits progress."""

    def __init__(self, stack: Context, rate: float, duration: float) -> None:
        self.progress: sim.Report | None = None
        self.result: sim.Report | None = None

        def tick(report: sim.Report) -> None:
            self.progress = report

        def go() -> None:
            self.result = asyncio.run(sim.run(demo.model_server_url(stack), "hungary", rate, duration,
                                              send_labels=False, seed=int(time.time()),
                                              auth=DeviceAuth(stack.settings), on_tick=tick))

        self.thread = threading.Thread(target=go)
        self.thread.start()

    def wait_ok(self, n: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.progress is None or self.progress.ok < n:
            assert time.monotonic() < deadline, f"traffic did not reach {n} ok answers"
            time.sleep(0.1)

    def join(self) -> sim.Report:
        self.thread.join()
        assert self.result is not None
        return self.result


def test_n_predictions_make_exactly_n_rows_with_the_same_answers(
    stack: Context, champion: dict[str, Any], api: httpx.Client
) -> None:
    since = datetime.now(UTC)
    records = [encode_row(r) for r in load_raw(["switzerland"])[:40]]
    answers = {}
    for record in records:
        resp = api.post("/v1/predict", json=record)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        answers[body["request_id"]] = (body["model"]["version"], body["prediction"], body["probability"])
    cap = demo.captured(stack, answers, stack.settings.model_name, since)
    assert cap == demo.Capture(answered=40, captured=40)
    rows = {str(r.request_id): r for r in _rows(stack, list(answers), since)}
    assert len(rows) == 40
    for rid, (version, prediction, probability) in answers.items():
        row = rows[rid]
        assert (row.model_version, row.prediction) == (str(version), prediction)
        assert row.probability == pytest.approx(probability, rel=1e-6)


@pytest.mark.parametrize(("payload", "status"), [
    ("not json", 400),
    ({"age": 50}, 422),                                   # missing fields
    ("extra", 422),                                       # an unknown field
    ("mistyped", 422),                                    # a string where a number goes
    ("out_of_range", 422),                                # cholesterol of 9999
])
def test_bad_input_gets_its_4xx_and_is_not_captured(
    stack: Context, champion: dict[str, Any], api: httpx.Client, payload: Any, status: int
) -> None:
    good = encode_row(load_raw(["hungary"])[0])
    bodies = {"extra": {**good, "shoe_size": 42}, "mistyped": {**good, "age": "fifty"},
              "out_of_range": {**good, "chol": 9999}}
    body = bodies.get(payload, payload) if isinstance(payload, str) else payload
    since = datetime.now(UTC)
    before = len(_rows(stack, None, since))
    if body == "not json":
        resp = api.post("/v1/predict", content=b"{age: 50", headers={"Content-Type": "application/json"})
    else:
        resp = api.post("/v1/predict", json=body)
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert error["message"]
    # A good request after it is captured, the bad one is not: the day gains one row only.
    marker = api.post("/v1/predict", json=good).json()["request_id"]
    assert demo.captured(stack, [marker], stack.settings.model_name, since).captured == 1
    assert len(_rows(stack, None, since)) == before + 1


def test_promotion_switches_the_served_version_with_no_failed_request(
    stack: Context, champion: dict[str, Any]
) -> None:
    s = stack.settings
    base = f"{mlflow.tracking_uri(stack)}/api/2.0/mlflow"
    # A new version from the champion's own model: what changes is the alias.
    created = httpx.post(f"{base}/model-versions/create", timeout=30, json={
        "name": s.model_name, "source": champion["source"], "run_id": champion["run_id"],
        # MLflow 3: the source is a logged model, named again by its id.
        "model_id": champion["source"].removeprefix("models:/")}).json()
    new_version = created["model_version"]["version"]
    traffic = Traffic(stack, rate=40, duration=20)
    traffic.wait_ok(100)  # the old version has answered for a while
    httpx.post(f"{base}/registered-models/alias", timeout=30, headers=demo.mlflow_service_headers(stack),
               json={"name": s.model_name, "alias": s.model_alias, "version": new_version}).raise_for_status()
    result = traffic.join()
    assert result.errors == 0, result.error_samples
    assert result.sent == result.ok == 800
    assert set(result.versions) == {str(champion["version"]), str(new_version)}
    demo.wait_served(stack, new_version)


def test_kafka_outage_during_traffic_loses_and_duplicates_nothing(
    stack: Context, champion: dict[str, Any]
) -> None:
    since = datetime.now(UTC)
    traffic = Traffic(stack, rate=20, duration=20)
    traffic.wait_ok(40)  # some requests are captured before the outage
    down = subprocess.run([sys.executable, "-m", "skiff.cli", "down", "kafka"], capture_output=True,
                          text=True, timeout=120, check=False)
    assert down.returncode == 0, down.stderr
    result = traffic.join()
    up = subprocess.run([sys.executable, "-m", "skiff.cli", "up", "--native"], capture_output=True,
                        text=True, timeout=600, check=False)
    assert up.returncode == 0, up.stderr
    assert result.errors == 0, result.error_samples
    cap = demo.captured(stack, result.request_ids, stack.settings.model_name, since, timeout=180)
    assert cap.captured == cap.answered == 400
    rows = _rows(stack, result.request_ids, since)
    assert len(rows) == 400, "a replayed event must overwrite its row, not add one"
    assert len({r.request_id for r in rows}) == 400
