"""Kafka (KRaft): a message produced is consumed back, on a topic bootstrap created."""

from __future__ import annotations

import json
import uuid

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient

from skiff.native.context import Context
from skiff.services import kafka

pytestmark = pytest.mark.integration


def test_bootstrap_created_the_platform_topics_with_three_partitions(stack: Context) -> None:
    admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers(stack))
    try:
        described = {t["topic"]: len(t["partitions"]) for t in admin.describe_topics(stack.settings.topics)}
    finally:
        admin.close()
    assert described == {topic: 3 for topic in stack.settings.topics}


def test_produced_message_is_consumed_back(stack: Context) -> None:
    servers = kafka.bootstrap_servers(stack)
    event = {"request_id": str(uuid.uuid4()), "features": {"age": 54.0}}
    producer = KafkaProducer(bootstrap_servers=servers, acks="all",
                             value_serializer=lambda v: json.dumps(v).encode())
    meta = producer.send("platform-events", event, key=event["request_id"].encode()).get(timeout=30)
    producer.close()

    consumer = KafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False,
                             value_deserializer=lambda b: json.loads(b.decode()),
                             consumer_timeout_ms=15000)
    partition = TopicPartition("platform-events", meta.partition)
    consumer.assign([partition])
    consumer.seek(partition, meta.offset)
    try:
        received = next(iter(consumer))
    finally:
        consumer.close()
    assert received.value == event
    assert received.key == event["request_id"].encode()
