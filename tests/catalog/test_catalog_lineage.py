"""Lineage: hand-built OpenLineage RunEvents (spec 2-0-2) in, versions and history out."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from skiff.pipelines.spec import identifier
from tests.catalog.conftest import World

pytestmark = pytest.mark.integration

PRODUCER = "https://github.com/skiff/tests"
SCHEMA = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/definitions/RunEvent"
FACET = {"_producer": PRODUCER, "_schemaURL": "https://skiff.local/facets/skiff_run.json"}


def event(kind: str, run_id: str, job: str, *, skiff_run: dict[str, Any] | None = None,
          inputs: list[dict] | None = None, outputs: list[dict] | None = None,
          time: str = "2026-01-05T10:00:00Z") -> dict[str, Any]:
    facets = {"skiff_run": {**FACET, **skiff_run}} if skiff_run else {}
    return {"eventType": kind, "eventTime": time, "producer": PRODUCER, "schemaURL": SCHEMA,
            "run": {"runId": run_id, "facets": facets},
            "job": {"namespace": "skiff", "name": job, "facets": {}},
            "inputs": inputs or [], "outputs": outputs or []}


def asset(ns: str, path: str, /, **skiff_asset: Any) -> dict[str, Any]:
    """An OpenLineage dataset; keyword arguments make its skiff_asset facet."""
    facets = {"skiff_asset": {**FACET, **skiff_asset}} if skiff_asset else {}
    return {"namespace": ns, "name": path, "facets": facets}


@pytest.fixture(scope="module")
def trained(crowd: World) -> dict[str, Any]:
    """prepare_data (raw CSV -> training set) then train (training set -> model version 3)."""
    raw, training, model = crowd.name("raw-heart"), crowd.name("training"), crowd.name("bracelet")
    dag = crowd.name("training-dag").replace("-", "_")
    prepare, train = str(uuid.uuid4()), str(uuid.uuid4())
    run = {"dag_id": dag, "dag_run_id": "manual__1", "user": crowd.alice.name}
    raw_in = asset("s3://datasets", "raw/heart.csv", kind="dataset", name=raw,
                   location="s3://datasets/raw/heart.csv", digest="sha256:aaa", format="csv")
    training_out = asset("s3://datasets", "bracelet/train.csv", kind="dataset", name=training,
                         location="s3://datasets/bracelet/train.csv", digest="sha256:bbb",
                         format="csv", size_bytes=1234)
    answers = [
        crowd.service.post("/lineage", json=event(
            "START", prepare, f"{dag}.prepare_data", skiff_run={**run, "task_id": "prepare_data"},
            inputs=[raw_in])),
        crowd.service.post("/lineage", json=event(
            "COMPLETE", prepare, f"{dag}.prepare_data", time="2026-01-05T10:01:00Z",
            skiff_run={**run, "task_id": "prepare_data", "step": "prepare_data",
                       "step_version": 2, "parameters": {"sites": ["hungary"]}},
            inputs=[raw_in], outputs=[training_out])),
        crowd.service.post("/lineage", json=event(
            "COMPLETE", train, f"{dag}.train", time="2026-01-05T10:05:00Z",
            skiff_run={**run, "task_id": "train", "step": "train", "step_version": "1.4",
                       "parameters": {"max_depth": 4}, "mlflow_run_id": "abc123",
                       "notebook": "notebooks/train.ipynb"},
            inputs=[asset("s3://datasets", "bracelet/train.csv", kind="dataset", name=training,
                          digest="sha256:bbb")],
            outputs=[asset("mlflow", f"models:/{model}/3", kind="model", name=model, version=3,
                           format="onnx", location="s3://mlflow/models/3/model.onnx",
                           size_bytes=4096)])),
    ]
    for answer in answers:
        assert answer.status_code == 201, answer.text
    return {"raw": raw, "training": training, "model": model, "dag": dag, "prepare": prepare,
            "train": train, "answers": [a.json() for a in answers],
            "events": {"train_complete": answers[2].request.content}}


def test_a_complete_event_records_each_output_as_a_version(trained: dict[str, Any]) -> None:
    start, prepared, model = trained["answers"]
    assert start["recorded"] == []
    assert start["run"]["state"] == "START"
    assert prepared["recorded"] == [f"dataset/{trained['training']}@1"]
    assert prepared["run"]["state"] == "COMPLETE"
    assert model["recorded"] == [f"model/{trained['model']}@3"]
    assert model["run"]["inputs"] == [f"dataset/{trained['training']}@1"]


def test_history_walks_back_to_the_raw_data(crowd: World, trained: dict[str, Any]) -> None:
    answer = crowd.alice.get(f"/assets/model/{trained['model']}/history")
    assert answer.status_code == 200, answer.text
    history = answer.json()
    assert (history["asset"], history["version"]) == (f"model/{trained['model']}", "3")
    refs = [e["ref"] for e in history["chain"]]
    assert refs == [f"model/{trained['model']}@3", f"dataset/{trained['training']}@1",
                    f"dataset/{trained['raw']}@1"]
    model, training, raw = history["chain"]
    assert {k: model["run"][k] for k in ("run_id", "dag_id", "task_id", "step", "step_version",
                                         "user", "parameters", "mlflow_run_id", "notebook",
                                         "state")} == {
        "run_id": trained["train"], "dag_id": trained["dag"], "task_id": "train", "step": "train",
        "step_version": "1.4", "user": crowd.alice.name, "parameters": {"max_depth": 4},
        "mlflow_run_id": "abc123", "notebook": "notebooks/train.ipynb", "state": "COMPLETE"}
    assert (model["format"], model["size_bytes"], model["inputs"]) == \
        ("onnx", 4096, [f"dataset/{trained['training']}@1"])
    assert (training["digest"], training["run"]["parameters"], training["inputs"]) == \
        ("sha256:bbb", {"sites": ["hungary"]}, [f"dataset/{trained['raw']}@1"])
    assert (raw["run"], raw["inputs"], raw["digest"]) == (None, [], "sha256:aaa")


def test_created_assets_belong_to_the_runs_user(crowd: World, trained: dict[str, Any]) -> None:
    # No workflow registered for the DAG: owner = the run's user, private.
    model = crowd.alice.get(f"/assets/model/{trained['model']}").json()
    assert (model["owner"], model["access"], model["latest_version"], model["format"]) == \
        (crowd.alice.name, "private", "3", "onnx")
    assert crowd.bob.get(f"/assets/model/{trained['model']}").status_code == 404
    assert crowd.bob.get(f"/assets/model/{trained['model']}/history").status_code == 404
    assert crowd.bob.get(f"/runs/{trained['train']}").status_code == 404


def test_the_same_event_twice_records_once(crowd: World, trained: dict[str, Any]) -> None:
    again = crowd.service.post("/lineage", content=trained["events"]["train_complete"],
                               headers={"Content-Type": "application/json"})
    assert again.status_code == 201, again.text
    assert again.json()["recorded"] == [f"model/{trained['model']}@3"]
    versions = crowd.alice.get(f"/assets/model/{trained['model']}/versions").json()["versions"]
    assert [(v["version"], v["run"]) for v in versions] == [("3", trained["train"])]


def test_a_run_lists_its_inputs_and_outputs(crowd: World, trained: dict[str, Any]) -> None:
    run = crowd.alice.get(f"/runs/{trained['prepare']}").json()
    assert (run["inputs"], run["outputs"]) == ([f"dataset/{trained['raw']}@1"],
                                               [f"dataset/{trained['training']}@1"])
    assert run["started_at"] is not None and run["ended_at"] is not None


def test_outputs_get_the_next_version_and_new_raw_data_a_new_raw_version(
        crowd: World, trained: dict[str, Any]) -> None:
    run = str(uuid.uuid4())
    answer = crowd.service.post("/lineage", json=event(
        "COMPLETE", run, f"{trained['dag']}.prepare_data",
        skiff_run={"dag_id": trained["dag"], "user": crowd.alice.name},
        inputs=[asset("s3://datasets", "raw/heart.csv", kind="dataset", name=trained["raw"],
                      digest="sha256:ccc")],
        outputs=[asset("s3://datasets", "bracelet/train.csv", kind="dataset",
                       name=trained["training"], digest="sha256:ddd")]))
    assert answer.json()["recorded"] == [f"dataset/{trained['training']}@2"]
    history = crowd.alice.get(f"/assets/dataset/{trained['training']}/history").json()
    assert [e["ref"] for e in history["chain"]] == [f"dataset/{trained['training']}@2",
                                                   f"dataset/{trained['raw']}@2"]
    older = crowd.alice.get(f"/assets/dataset/{trained['training']}/history",
                            params={"version": "1"}).json()
    assert older["chain"][0]["digest"] == "sha256:bbb"
    missing = crowd.alice.get(f"/assets/dataset/{trained['training']}/history",
                              params={"version": "99"})
    assert missing.status_code == 404


def test_a_named_version_of_another_run_is_a_conflict(crowd: World,
                                                      trained: dict[str, Any]) -> None:
    answer = crowd.service.post("/lineage", json=event(
        "COMPLETE", str(uuid.uuid4()), "other.train", skiff_run={"user": crowd.alice.name},
        outputs=[asset("mlflow", "m", kind="model", name=trained["model"], version="3")]))
    assert (answer.status_code, answer.json()["error"]) == (409, "version_exists")
    versions = crowd.alice.get(f"/assets/model/{trained['model']}/versions").json()["versions"]
    assert len(versions) == 1


def test_a_workflows_assets_take_its_owner_team_and_access(crowd: World) -> None:
    dag = f"{identifier(crowd.bob.name)}__{crowd.name('team-dag').replace('-', '_')}"
    made = crowd.bob.post("/assets", json={
        "kind": "workflow", "name": crowd.name("team-flow"), "access": "team",
        "spec": {"engine": "elyra", "dag_id": dag, "uses": []}})
    assert made.status_code == 201, made.text
    out = crowd.name("scored")
    answer = crowd.service.post("/lineage", json=event(
        "COMPLETE", str(uuid.uuid4()), f"{dag}.score", skiff_run={"dag_id": dag, "user": "x"},
        outputs=[asset("s3://datasets", "scored/out.parquet")
                 | {"facets": {"skiff_asset": {"kind": "dataset", "name": out}}}]))
    assert answer.status_code == 201, answer.text
    assert answer.json()["run"]["workflow"] == f"workflow/{crowd.name('team-flow')}"
    seen = crowd.alice.get(f"/assets/dataset/{out}").json()
    assert (seen["owner"], seen["team"], seen["access"]) == (crowd.bob.name, crowd.team_a, "team")
    assert crowd.carol.get(f"/assets/dataset/{out}").status_code == 404


def test_datasets_without_the_facet_are_named_from_namespace_and_name(crowd: World) -> None:
    name = crowd.name("plain")
    answer = crowd.service.post("/lineage", json=event(
        "COMPLETE", str(uuid.uuid4()), "adhoc", skiff_run={"user": crowd.carol.name},
        outputs=[{"namespace": "s3://scratch", "name": f"{name}/part-0.csv"}]))
    assert answer.status_code == 201, answer.text
    ref = f"dataset/s3-scratch.{name}-part-0.csv"
    assert answer.json()["recorded"] == [f"{ref}@1"]
    seen = crowd.carol.get(f"/assets/{ref}").json()
    assert seen["location"] == f"s3://scratch/{name}/part-0.csv"


def test_other_event_types_record_the_state_only(crowd: World) -> None:
    run = str(uuid.uuid4())
    out = asset("s3://x", "y", kind="dataset", name=crowd.name("never-written"))
    for kind in ("START", "FAIL"):
        answer = crowd.service.post("/lineage", json=event(kind, run, "j.t", outputs=[out],
                                                           skiff_run={"user": crowd.alice.name}))
        assert answer.json()["recorded"] == []
    assert crowd.admin.get(f"/runs/{run}").json()["state"] == "FAIL"
    assert crowd.admin.get(f"/assets/dataset/{crowd.name('never-written')}").status_code == 404


def test_only_the_service_and_admins_post_lineage(crowd: World) -> None:
    body = event("START", str(uuid.uuid4()), "j.t")
    answer = crowd.alice.post("/lineage", json=body)
    assert (answer.status_code, answer.json()["error"]) == (403, "forbidden")
    assert crowd.admin.post("/lineage", json=body).status_code == 201


@pytest.mark.parametrize(("change", "field"), [
    (lambda e: e["run"].pop("runId"), "run.runId"),
    (lambda e: e["run"].update(runId="not-a-uuid"), "run.runId"),
    (lambda e: e.pop("eventTime"), "eventTime"),
    (lambda e: e.update(eventTime="2026-01-05T10:00:00"), "eventTime"),
    (lambda e: e.update(eventType="DONE"), "eventType"),
    (lambda e: e["job"].pop("name"), "job.name"),
    (lambda e: e["outputs"].append({"namespace": "n", "name": "x", "facets": {
        "skiff_asset": {"kind": "table", "name": "x"}}}), "outputs.0.facets.skiff_asset.kind"),
    (lambda e: e["run"]["facets"].update(skiff_run={"parameters": [1, 2]}),
     "run.facets.skiff_run.parameters"),
])
def test_a_malformed_event_is_a_422_naming_the_field(crowd: World, change: Any,
                                                     field: str) -> None:
    body = event("COMPLETE", str(uuid.uuid4()), "j.t")
    change(body)
    answer = crowd.service.post("/lineage", json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == field


def test_concurrent_runs_get_distinct_versions(crowd: World) -> None:
    from concurrent.futures import ThreadPoolExecutor

    name = crowd.name("busy")

    def post(_: int) -> Any:
        return crowd.service.post("/lineage", json=event(
            "COMPLETE", str(uuid.uuid4()), "busy.write", skiff_run={"user": crowd.alice.name},
            outputs=[asset("s3://x", "busy", kind="dataset", name=name)]))

    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(post, range(6)))
    assert [a.status_code for a in answers] == [201] * 6, [a.text for a in answers]
    recorded = sorted(a.json()["recorded"][0] for a in answers)
    assert recorded == sorted(f"dataset/{name}@{n}" for n in range(1, 7))
