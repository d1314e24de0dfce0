"""The training trigger: request parsing, and the loop's commit discipline (fakes, no services)."""

from __future__ import annotations

import json
from collections import namedtuple
from pathlib import Path
from typing import Any

import pytest
from kafka.structs import TopicPartition

from skiff.bracelet import training_trigger as tt

pytestmark = pytest.mark.unit

Record = namedtuple("Record", "topic partition offset value")


def test_run_id_names_topic_partition_and_offset() -> None:
    assert tt.run_id("training-requests", 2, 41) == "kafka-training-requests-2-41"


def test_params_become_the_conf_and_data_location_the_data_source() -> None:
    conf = tt.parse(json.dumps({"params": {"model_family": "random_forest", "seed": 3,
                                           "hyperparameters": {"n_estimators": 50}},
                                "data_location": "s3://datasets/extra.csv"}).encode())
    assert conf == {"model_family": "random_forest", "seed": 3,
                    "hyperparameters": '{"n_estimators": 50}', "data_source": "s3://datasets/extra.csv"}


def test_an_empty_object_is_a_run_with_the_defaults() -> None:
    assert tt.parse(b"{}") == {}


@pytest.mark.parametrize(("value", "why"), [
    (b"not json", "not JSON"),
    (b"[1]", "not a JSON object"),
    (None, "tombstone"),
    (b'{"parms": {}}', "unknown fields"),
    (b'{"params": []}', "must be an object"),
    (b'{"params": {"learning_rate": 0.1}}', "unknown params"),
    (b'{"params": {"hyperparameters": "[1]"}}', "JSON object"),
    (b'{"params": {"hyperparameters": "{oops"}}', "not JSON"),
    (b'{"data_location": ""}', "non-empty"),
    (b'{"params": {"data_source": "/a.csv"}, "data_location": "/b.csv"}', "differ"),
])
def test_invalid_requests_say_why(value: bytes | None, why: str) -> None:
    with pytest.raises(tt.Invalid, match=why):
        tt.parse(value)


class FakeConsumer:
    def __init__(self, batches: list[dict[TopicPartition, list[Record]]]) -> None:
        self.batches = batches
        self.commits: list[tuple[int, int]] = []
        self.seeks: list[tuple[int, int]] = []

    def poll(self, timeout_ms: int) -> dict[TopicPartition, list[Record]]:
        return self.batches.pop(0) if self.batches else {}

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition(tt.TOPIC, 0), TopicPartition(tt.TOPIC, 1)}

    def commit(self, offsets: dict[TopicPartition, Any]) -> None:
        for tp, meta in offsets.items():
            self.commits.append((tp.partition, meta.offset))

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp.partition, offset))


class FakeAirflow:
    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.calls: list[str] = []

    def trigger(self, dag_id: str, dag_run_id: str, conf: dict[str, Any]) -> str:
        self.calls.append(dag_run_id)
        answer = self.answers.get(dag_run_id, "triggered")
        if isinstance(answer, Exception):
            raise answer
        return str(answer)


def _loop(tmp_path: Path, batches: list[Any], answers: dict[str, Any]) -> tuple[tt.Trigger, FakeConsumer]:
    consumer = FakeConsumer(batches)
    trigger = tt.Trigger(consumer, FakeAirflow(answers), tt.Heartbeat(tmp_path / "hb.json"))  # type: ignore[arg-type]
    trigger.sleep = lambda seconds: None  # type: ignore[method-assign]
    return trigger, consumer


def _rec(partition: int, offset: int, value: bytes = b"{}") -> Record:
    return Record(tt.TOPIC, partition, offset, value)


def test_each_offset_is_committed_after_its_trigger_and_duplicates_count_as_done(tmp_path: Path) -> None:
    tp0 = TopicPartition(tt.TOPIC, 0)
    trigger, consumer = _loop(tmp_path, [{tp0: [_rec(0, 5), _rec(0, 6), _rec(0, 7, b"junk")]}],
                              {"kafka-training-requests-0-6": "duplicate"})
    trigger.poll_once()
    assert trigger.airflow.calls == ["kafka-training-requests-0-5", "kafka-training-requests-0-6"]  # type: ignore[attr-defined]
    assert consumer.commits == [(0, 6), (0, 7), (0, 8)]  # the invalid one is skipped and committed
    assert consumer.seeks == []
    assert json.loads((tmp_path / "hb.json").read_text())["assignment"] == [
        "training-requests-0", "training-requests-1"]


def test_a_failed_trigger_commits_nothing_and_rewinds_every_partition(tmp_path: Path) -> None:
    tp0, tp1 = TopicPartition(tt.TOPIC, 0), TopicPartition(tt.TOPIC, 1)
    trigger, consumer = _loop(
        tmp_path, [{tp0: [_rec(0, 1), _rec(0, 2), _rec(0, 3)], tp1: [_rec(1, 9)]}],
        {"kafka-training-requests-0-2": tt.Retry("Airflow unreachable")})
    trigger.poll_once()
    assert consumer.commits == [(0, 2)]  # offset 1 done; 2 failed: nothing past it
    assert sorted(consumer.seeks) == [(0, 2), (1, 9)]  # both partitions are read again
    assert trigger.backoff == 1.0
    # Airflow is back: the same records come again and go through.
    consumer.batches.append({tp0: [_rec(0, 2), _rec(0, 3)], tp1: [_rec(1, 9)]})
    trigger.airflow.answers.clear()  # type: ignore[attr-defined]
    trigger.poll_once()
    assert consumer.commits == [(0, 2), (0, 3), (0, 4), (1, 10)]
    assert trigger.backoff == 0.0


def test_stopping_leaves_the_rest_of_the_batch_uncommitted(tmp_path: Path) -> None:
    tp0 = TopicPartition(tt.TOPIC, 0)
    trigger, consumer = _loop(tmp_path, [{tp0: [_rec(0, 1), _rec(0, 2)]}], {})
    trigger.stopping = True
    trigger.poll_once()
    assert consumer.commits == [] and consumer.seeks == [(0, 1)]
