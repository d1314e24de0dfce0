"""Scheduled capture ingest: Kafka prediction-requests -> Cassandra, every 10 minutes.

The second way to run the capture path, for a deployment without the long-running
``ingest`` service: each run reads from consumer group ``skiff-ingest-batch``'s
committed offsets up to the topic's end at the start of the run, writes with the
same writer as the service (serving/ingest), commits, and returns its counts as
the task's XCom. Hosts and ports come from skiff's settings (.env / environment).

Paused when created: where the ``ingest`` service runs, this would only write every
row a second time (harmlessly: the writes are idempotent). Unpause it to use it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import dag, task


@dag(dag_id="capture_ingest", schedule=timedelta(minutes=10),
     start_date=datetime(2026, 1, 1, tzinfo=UTC), catchup=False, max_active_runs=1,
     is_paused_upon_creation=True, tags=["skiff", "capture"],
     default_args={"retries": 2, "retry_delay": timedelta(minutes=1)})
def capture_ingest():
    @task(execution_timeout=timedelta(minutes=9))
    def ingest() -> dict:
        # Heavy imports (kafka-python, cassandra-driver) at run time, not at DAG parse time.
        from serving.ingest.scheduled import ingest_to_end

        return ingest_to_end()

    ingest()


capture_ingest()
