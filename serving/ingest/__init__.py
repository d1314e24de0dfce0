"""Capture ingest: Kafka ``prediction-requests`` -> Cassandra ``skiff.prediction_events``.

Two modes share one pipeline (:mod:`serving.ingest.batch`) and one writer
(:mod:`serving.ingest.writer`):

- streaming: ``python -m serving.ingest`` (the native ``ingest`` service), consumer
  group ``skiff-ingest``, commits after each batch Cassandra acknowledged;
- scheduled: ``dags/capture_ingest.py`` calls :func:`serving.ingest.scheduled.ingest_to_end`,
  consumer group ``skiff-ingest-batch``, from its committed offsets to the end.

Delivery is at least once and the writes are idempotent (keyed by request id), so a
replayed batch changes nothing. Messages that are not capture events go, unchanged,
to ``prediction-requests-dlq`` with a ``reason`` header.

Imports here stay light (cassandra-driver and kafka-python are imported by the
modules that use them): the Airflow DAG imports this package at parse time.
"""
