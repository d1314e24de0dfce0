"""Retraining on a drift alert, through the dynamic-training path (docs/decisions/0004).

The monitoring DAG (param ``retrain_on_alert``) puts one training request on the
``training-requests`` topic; the training-trigger service turns it into a
bracelet_training run, whose Airflow run id follows from where the request landed
(``kafka-<topic>-<partition>-<offset>``), so the alert can name the run it caused.

The request retrains the drifted model with the captured, labelled requests
(``include_captured``): the patients that drifted are what the new version should
learn from. The request's payload holds only what the trigger accepts (DAG params);
why it was sent travels in Kafka headers, which the trigger ignores and a person
reading the topic sees.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from skiff.bracelet import training_trigger

# How long to wait for Kafka's acknowledgement of the request.
SEND_TIMEOUT_S = 15.0


def request_payload(model_name: str) -> dict[str, Any]:
    """The training request: the drifted model, retrained with its captured labelled requests."""
    payload = {"params": {"model_name": model_name, "include_captured": True}}
    # The trigger's own validation: a request it would refuse must fail here, not there.
    training_trigger.parse(json.dumps(payload).encode())
    return payload


def bootstrap_servers() -> str:
    """Kafka as Airflow's task environment gives it (KAFKA_HOST/PORT), else skiff's settings."""
    if os.environ.get("KAFKA_HOST"):
        return f"{os.environ['KAFKA_HOST']}:{os.environ.get('KAFKA_PORT', '9092')}"
    from skiff.native.context import Context

    s = Context.discover().settings
    return f"{s.host('kafka')}:{s.kafka_port}"


def request(model_name: str, reason: str, details: Mapping[str, str] | None = None, *,
            topic: str = training_trigger.TOPIC, servers: str | None = None) -> dict[str, Any]:
    """Send one training request; returns where it landed and the Airflow run it will be.

    Raises kafka.errors.KafkaError when Kafka does not acknowledge it: the caller
    (the DAG task) fails rather than claim a retraining nobody will do.
    """
    from kafka import KafkaProducer

    payload = request_payload(model_name)
    headers = [("skiff-reason", reason.encode()),
               *((f"skiff-{k}", str(v).encode()) for k, v in (details or {}).items())]
    producer = KafkaProducer(bootstrap_servers=servers or bootstrap_servers(), acks="all",
                             client_id="skiff-monitoring-retrain")
    try:
        sent = producer.send(topic, key=model_name.encode(), value=json.dumps(payload).encode(),
                             headers=headers).get(timeout=SEND_TIMEOUT_S)
    finally:
        producer.close()
    return {"topic": sent.topic, "partition": sent.partition, "offset": sent.offset,
            "run_id": training_trigger.run_id(sent.topic, sent.partition, sent.offset),
            "dag_id": training_trigger.DAG_ID, "params": payload["params"], "reason": reason}
