"""Batch scoring on the live stack: `skiff score` and the batch_scoring DAG, through Spark.

A small CSV of real UCI rows (numeric encoding) plus deliberately bad ones is
scored with the champion; the outputs are read back through Spark, the counts
must add up, each reject must carry its reason, the predictions must be the
model server's for the same rows, and MLflow must hold the run with the version.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from skiff.bracelet import demo
from skiff.bracelet.features import NAMES, encode_row, load_raw
from skiff.keycloak import DeviceAuth
from skiff.native.context import Context
from skiff.scoring.locations import S3Location
from skiff.scoring.store import upload
from skiff.services import REGISTRY, model_server, s3, spark

pytestmark = pytest.mark.integration

DAG = "batch_scoring"
GOOD_ROWS = 40
# id -> (cells that override a good row, a piece of the reason it must be rejected with)
BAD: dict[str, tuple[dict[str, str], str]] = {
    "bad-age-text": ({"age": "sixty"}, "age: must be a number, got str 'sixty'"),
    "bad-age-range": ({"age": "150"}, "age: must be between 1 and 120, got 150.0"),
    "bad-sex-code": ({"sex": "5"}, "sex: must be one of [0, 1], got 5.0"),
    "bad-cp-missing": ({"cp": ""}, "cp: is required and may not be null"),
    "bad-chol-inf": ({"chol": "inf"}, "chol: must be a finite number, got inf"),
}
MALFORMED_ID = "bad-short-line"


@pytest.fixture(scope="module")
def champion(stack: Context) -> dict[str, Any]:
    if "spark" not in REGISTRY:
        pytest.skip("spark is not in skiff.services.REGISTRY")
    mv = demo.champion(stack)
    if mv is None:
        from tests.serving.test_model_server import register

        register(stack)
        mv = demo.champion(stack)
    assert mv is not None
    return mv


@pytest.fixture(scope="module", autouse=True)
def tidy(stack: Context) -> Iterator[None]:
    """Remove what these tests wrote to the S3 store (inputs, uploads, outputs)."""
    yield
    from minio.deleteobjects import DeleteObject

    client = s3.root_client(stack)
    for prefix in ("tests/scoring-", "scoring-inputs/"):
        names = [DeleteObject(o.object_name) for o in
                 client.list_objects("datasets", prefix=prefix, recursive=True)
                 if prefix != "scoring-inputs/" or o.object_name.endswith(("-patients.csv", "-wrong.csv"))]
        list(client.remove_objects("datasets", names))


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, str]]]:
    """The CSV and its good rows (id + features as written)."""
    path = tmp_path_factory.mktemp("scoring") / "patients.csv"
    good: list[dict[str, str]] = []
    for i, raw in enumerate(load_raw(["cleveland"])[:GOOD_ROWS]):
        encoded = encode_row(raw)
        row = {"id": f"ok-{i}", **{k: "" if v is None else f"{v:g}" for k, v in encoded.items()}}
        good.append(row)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", *NAMES])
        for row in good:
            writer.writerow([row[c] for c in ["id", *NAMES]])
        for bad_id, (cells, _) in BAD.items():
            row = {**good[0], **cells, "id": bad_id}
            writer.writerow([row[c] for c in ["id", *NAMES]])
        writer.writerow([MALFORMED_ID, "63", "1"])
    return path, good


def read_outputs(ctx: Context, out: str) -> dict[str, list[dict[str, Any]]]:
    done = subprocess.run(
        [str(spark.python(ctx)), str(Path(__file__).with_name("read_scores.py")), "--out", out],
        env={**os.environ, "PYTHONPATH": str(ctx.root / "src"), "SPARK_REMOTE": spark.client_remote(ctx)},
        capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def check_outputs(ctx: Context, out: str, good: list[dict[str, str]], version: str) -> list[dict[str, Any]]:
    outputs = read_outputs(ctx, out)
    scored, rejected = outputs["scored"], outputs["rejected"]
    assert len(scored) + len(rejected) == len(good) + len(BAD) + 1
    assert sorted(r["id"] for r in scored) == sorted(r["id"] for r in good)
    reasons = {r["id"]: r["reason"] for r in rejected}
    assert set(reasons) == {*BAD, MALFORMED_ID}
    for bad_id, (_, why) in BAD.items():
        assert why in reasons[bad_id], (bad_id, reasons[bad_id])
    assert "malformed CSV line" in reasons[MALFORMED_ID]
    assert all(r["prediction"] is None for r in rejected)
    assert {r["model_version"] for r in scored} == {version}
    # Every input column stays as the text that was read.
    by_id = {r["id"]: r for r in good}
    assert all(r[n] == by_id[r["id"]][n] for r in scored for n in NAMES)
    return scored


def server_predictions(ctx: Context, rows: list[dict[str, str]]) -> tuple[str, dict[str, dict[str, Any]]]:
    records = [{n: None if r[n] == "" else float(r[n]) for n in NAMES} for r in rows]
    with httpx.Client(base_url=model_server.url(ctx), timeout=30, auth=DeviceAuth(ctx.settings)) as api:
        resp = api.post("/v1/predict", json={"records": records})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    return str(body["model"]["version"]), {
        r["id"]: p for r, p in zip(rows, body["predictions"], strict=True)}


def test_skiff_score_scores_rejects_and_records(stack: Context, champion: dict[str, Any],
                                                batch: tuple[Path, list[dict[str, str]]]) -> None:
    path, good = batch
    s = stack.settings
    # Other work (training runs) may move the champion while a batch runs; the server
    # then answers with another version and the comparison means nothing: run again.
    for _attempt in range(3):
        out = f"s3://datasets/tests/scoring-{uuid.uuid4().hex[:12]}"
        done = subprocess.run([str(stack.root / ".venv/bin/skiff"), "score", str(path),
                               "--model", f"{s.model_name}@{s.model_alias}", "--out", out],
                              capture_output=True, text=True, timeout=600, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        found = re.search(r"model_version\s+(\S+)", done.stdout)
        run_id = re.search(r"mlflow_run_id\s+(\w+)", done.stdout)
        assert found and run_id, done.stdout
        version = found.group(1)
        scored = check_outputs(stack, out, good, version)
        try:
            # The server swaps a new champion in within MODEL_REFRESH_SECONDS.
            demo.wait_served(stack, version, timeout=30)
        except demo.DemoError:
            continue
        served_version, served = server_predictions(stack, good)
        if served_version == version:
            break
    else:
        pytest.fail("the champion moved during each of 3 batches; predictions not compared")

    # The same rows through the REST API give the same answers, from the same version.
    for row in scored:
        assert row["prediction"] == served[row["id"]]["prediction"], row["id"]
        assert row["probability"] == pytest.approx(served[row["id"]]["probability"], abs=1e-6)

    run = demo.mlflow_get(stack, "runs/get", run_id=run_id.group(1))["run"]
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    mv = demo.mlflow_get(stack, "model-versions/get", name=s.model_name, version=version)
    assert tags["model_name"] == s.model_name and tags["model_version"] == version
    assert tags["model_run_id"] == mv["model_version"]["run_id"]
    assert tags["counts_add_up"] == "true"
    assert params["output"] == out
    assert params["rejects_output"] == f"{out}/outcome=rejected"
    assert metrics == {"input_rows": len(good) + len(BAD) + 1, "scored_rows": len(good),
                       "rejected_rows": len(BAD) + 1}


@pytest.mark.compose
def test_batch_scoring_dag_scores_a_file_in_the_store(stack: Context, champion: dict[str, Any],
                                                      batch: tuple[Path, list[dict[str, str]]]) -> None:
    path, good = batch
    s = stack.settings
    source = S3Location("datasets", f"tests/scoring-input-{uuid.uuid4().hex[:12]}.csv")
    upload(s3.root_client(stack), path, source)
    out = f"s3://datasets/tests/scoring-dag-{uuid.uuid4().hex[:12]}"
    api = demo.airflow_client(stack)
    run_id = demo.trigger(api, DAG, {"input": source.uri, "model": f"{s.model_name}@{s.model_alias}",
                                     "out": out})
    state = demo.wait_run(api, DAG, run_id, timeout=600)
    assert state == "success", api.get(f"/dags/{DAG}/dagRuns/{run_id}/taskInstances").json()
    result = demo.xcom(api, DAG, run_id, "score")
    assert (result["input_rows"], result["scored_rows"], result["rejected_rows"]) == (
        len(good) + len(BAD) + 1, len(good), len(BAD) + 1)
    assert result["rejects_output"] == f"{out}/outcome=rejected"
    check_outputs(stack, out, good, result["model_version"])


def _score(stack: Context, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(stack.root / ".venv/bin/skiff"), "score", *args],
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize(("args", "message"), [
    (["{missing}", "--model", "{model}", "--out", "s3://datasets/tests/x"], "does not exist"),
    (["{csv}", "--model", "no-such-model-xyz@champion", "--out", "s3://datasets/tests/x"],
     "no model version no-such-model-xyz@champion"),
    (["{csv}", "--model", "{name}@no-such-alias", "--out", "s3://datasets/tests/x"],
     "unknown model or alias"),
    (["{csv}", "--model", "{model}", "--out", "s3://no-such-bucket-xyz/x"], "no bucket"),
    (["{csv}", "--model", "{model}", "--out", "results/"], "must be an s3://bucket/path URI"),
    (["s3://datasets/tests/no-such-file.csv", "--model", "{model}", "--out", "s3://datasets/tests/x"],
     "does not exist"),
])
def test_skiff_score_refuses_bad_arguments_clearly(stack: Context, champion: dict[str, Any],
                                                   batch: tuple[Path, list[dict[str, str]]],
                                                   args: list[str], message: str) -> None:
    s = stack.settings
    values = {"missing": str(batch[0].with_name("missing.csv")), "csv": str(batch[0]),
              "model": f"{s.model_name}@{s.model_alias}", "name": s.model_name}
    done = _score(stack, *[a.format(**values) for a in args])
    assert done.returncode == 1
    assert message in " ".join(done.stderr.split()), done.stderr
    assert "Traceback" not in done.stderr


def test_a_file_without_the_models_columns_is_refused_by_name(stack: Context, champion: dict[str, Any],
                                                              tmp_path: Path) -> None:
    path = tmp_path / "wrong.csv"
    path.write_text("id,age,sex\n1,63,1\n")
    s = stack.settings
    done = _score(stack, str(path), "--model", f"{s.model_name}@{s.model_alias}",
                  "--out", f"s3://datasets/tests/scoring-{uuid.uuid4().hex[:12]}")
    assert done.returncode == 1
    assert "lacks the columns cp, trestbps" in " ".join(done.stderr.split()), done.stderr
