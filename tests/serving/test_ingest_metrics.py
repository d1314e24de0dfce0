"""The ingest's Prometheus metrics against the real Kafka: lag per partition, served at /metrics.

A topic of the test's own gets records; a consumer that has read only some of them
must show the rest as lag on that partition, and lose the series when the
partition is no longer assigned to it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from serving.ingest import __main__ as ingest_main
from serving.ingest import metrics
from skiff.native.context import Context
from skiff.services import kafka

pytestmark = pytest.mark.integration

RECORDS = 5
READ = 2


@pytest.fixture
def topic(stack: Context) -> Iterator[str]:
    name = f"ingest-metrics-test-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers(stack))
    try:
        admin.create_topics([NewTopic(name, num_partitions=2, replication_factor=1)])
        yield name
    finally:
        admin.delete_topics([name])
        admin.close()


def sample(topic: str, partition: int) -> float | None:
    return metrics.REGISTRY.get_sample_value("skiff_ingest_lag_messages",
                                             {"topic": topic, "partition": str(partition)})


def test_lag_is_what_the_consumer_has_not_read_yet(stack: Context, topic: str) -> None:
    servers = kafka.bootstrap_servers(stack)
    producer = KafkaProducer(bootstrap_servers=servers, acks="all")
    for i in range(RECORDS):
        producer.send(topic, value=f"record {i}".encode(), partition=0)
    producer.flush()
    producer.close()

    consumer = KafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False,
                             auto_offset_reset="earliest", max_poll_records=READ)
    gauges = metrics.LagGauges()
    try:
        consumer.assign([TopicPartition(topic, 0), TopicPartition(topic, 1)])
        read = 0
        deadline = time.monotonic() + 30
        while read < READ and time.monotonic() < deadline:
            polled = consumer.poll(timeout_ms=500, max_records=READ - read)
            read += sum(len(batch) for batch in polled.values())
        assert read == READ
        gauges.update(consumer)
        assert sample(topic, 0) == RECORDS - READ
        # The empty partition is caught up once a fetch has told its high watermark.
        assert sample(topic, 1) in (0.0, None)
        assert metrics.ASSIGNED._value.get() == 2

        consumer.assign([TopicPartition(topic, 1)])
        gauges.update(consumer)
        assert sample(topic, 0) is None, "a partition no longer held keeps no lag series"
    finally:
        consumer.close()


def test_the_metrics_are_served_over_http() -> None:
    port = metrics.serve("127.0.0.1:0")
    resp = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert resp.status_code == 200
    assert "# TYPE skiff_ingest_lag_messages gauge" in resp.text
    assert "skiff_ingest_records_total" in resp.text


@pytest.mark.parametrize("address", ["8420", "localhost", "host:port"])
def test_a_bad_metrics_address_is_refused_with_its_value(
        address: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        ingest_main.main(["--metrics-address", address])
    assert exit_.value.code == 2
    assert f"--metrics-address {address!r}: expected HOST:PORT" in capsys.readouterr().err
