"""Training on demand: each message on ``training-requests`` triggers one bracelet_training run.

Payload: ``{"params": {...DAG params...}, "data_location": "s3://bucket/key" | "/path"}``
(both optional). The DAG run's conf is the payload's params, with ``data_location``
as the ``data_source`` param, so Airflow validates it against the DAG's Params.

Delivery is at least once, runs are exactly once: the run id is
``kafka-<topic>-<partition>-<offset>``, the offset is committed only after Airflow
accepted the run (201) or already had it (409: a replay after a crash between
trigger and commit). A message that can never succeed (not JSON, unknown
parameter, refused by the DAG's Params) is logged with its reason and committed.
Anything else (Airflow down, DAG not parsed yet) is retried, with backoff, from
the same offset: nothing is skipped. See docs/decisions/0004-dynamic-training.md.

It calls Airflow as its own realm user (``TRAINING_TRIGGER_USER``, role citizen:
it may trigger runs and read them, nothing more), created by the airflow
service's bootstrap; see :mod:`skiff.airflow_api` for the tokens.

Run it as ``python -m skiff.bracelet.training_trigger`` (the ``training-trigger``
native program). Once it holds partitions it rewrites a heartbeat file every
second; the service's readiness probe reads it.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

TOPIC = "training-requests"
GROUP = "skiff-training-trigger"
DAG_ID = "bracelet_training"
# The DAG's params: anything else in a request is a mistake worth reporting.
PARAMS = frozenset({"model_family", "hyperparameters", "seed", "margin", "metric",
                    "include_captured", "data_source", "model_name"})
MAX_BACKOFF = 30.0

log = logging.getLogger("skiff.training_trigger")


class Invalid(ValueError):
    """A request that can never trigger a run; the message says why."""


class Retry(RuntimeError):
    """Triggering failed for now (Airflow unreachable, DAG not parsed yet...): try again."""


def run_id(topic: str, partition: int, offset: int) -> str:
    return f"kafka-{topic}-{partition}-{offset}"


def parse(value: bytes | None) -> dict[str, Any]:
    """The DAG run conf of one request, or :class:`Invalid`."""
    if value is None:
        raise Invalid("empty message (tombstone)")
    try:
        doc = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Invalid(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise Invalid(f"not a JSON object but {type(doc).__name__}")
    unknown = sorted(set(doc) - {"params", "data_location"})
    if unknown:
        raise Invalid(f"unknown fields {unknown}; expected 'params' and 'data_location'")
    params = doc.get("params", {})
    if not isinstance(params, dict):
        raise Invalid(f"'params' must be an object, got {type(params).__name__}")
    unknown = sorted(set(params) - PARAMS)
    if unknown:
        raise Invalid(f"unknown params {unknown}; known: {sorted(PARAMS)}")
    conf = dict(params)
    if "hyperparameters" in conf:
        hp = conf["hyperparameters"]
        if isinstance(hp, str):
            try:
                hp = json.loads(hp)
            except json.JSONDecodeError as exc:
                raise Invalid(f"'hyperparameters' is not JSON: {exc}") from None
        if not isinstance(hp, dict):
            raise Invalid("'hyperparameters' must be a JSON object")
        conf["hyperparameters"] = json.dumps(hp, sort_keys=True)
    location = doc.get("data_location")
    if location is not None:
        if not isinstance(location, str) or not location.strip():
            raise Invalid("'data_location' must be a non-empty string")
        if conf.get("data_source", location) != location:
            raise Invalid("both 'data_location' and params.data_source are set, and differ")
        conf["data_source"] = location
    return conf


@dataclass
class Airflow:
    """Triggers DAG runs through REST API v2 as one realm user (tokens renewed as they expire)."""

    base_url: str
    user: str
    password: str
    timeout: float = 30.0

    def __post_init__(self) -> None:
        from skiff.airflow_api import TokenAuth

        self._http = httpx.Client(auth=TokenAuth(self.base_url, self.user, self.password, self.timeout),
                                  timeout=self.timeout)

    def trigger(self, dag_id: str, dag_run_id: str, conf: dict[str, Any]) -> str:
        """"triggered" or "duplicate"; raises :class:`Invalid` or :class:`Retry`."""
        from skiff.airflow_api import AirflowError

        url = f"{self.base_url.rstrip('/')}/api/v2/dags/{dag_id}/dagRuns"
        body = {"dag_run_id": dag_run_id, "logical_date": None, "conf": conf}
        try:
            resp = self._http.post(url, json=body)
        except httpx.HTTPError as exc:
            raise Retry(f"Airflow unreachable: {type(exc).__name__}: {exc}") from exc
        except AirflowError as exc:  # no token: Keycloak refused the password, or was down
            raise Retry(str(exc)) from exc
        if resp.status_code in (200, 201):
            return "triggered"
        if resp.status_code == 409:
            return "duplicate"
        detail = _detail(resp)
        if resp.status_code in (400, 422) and not _not_the_requests_fault(detail):
            raise Invalid(f"Airflow refused the conf (HTTP {resp.status_code}): {detail}")
        if resp.status_code == 403:
            # Not the request's fault either: the user's role, fixed in Keycloak, cures it.
            detail = (f"{self.user!r} may not trigger {dag_id} (its realm role must be citizen or "
                      f"above; `skiff bootstrap airflow` sets it): {detail}")
        raise Retry(f"HTTP {resp.status_code}: {detail}")


def _detail(resp: httpx.Response) -> str:
    try:
        detail = str(resp.json().get("detail", resp.text))
    except ValueError:
        detail = resp.text
    return " ".join(detail.split())[:500]  # one log line


def _not_the_requests_fault(detail: str) -> bool:
    # 400s that a fixed DAG or configuration cures: retry rather than drop the request.
    return "import errors" in detail or "does not allow" in detail


class Heartbeat:
    """A file rewritten while the consumer holds partitions: the readiness signal."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.clear()

    def beat(self, assignment: list[str]) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": os.getpid(), "group": GROUP, "assignment": assignment,
                                   "time": time.time()}))
        tmp.replace(self.path)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def heartbeat_path(state: Path) -> Path:
    return state / "data" / "training-trigger" / "heartbeat.json"


class Trigger:
    """The consumer loop: one message, one trigger, then one commit."""

    def __init__(self, consumer: Any, airflow: Airflow, heartbeat: Heartbeat) -> None:
        self.consumer = consumer
        self.airflow = airflow
        self.heartbeat = heartbeat
        self.stopping = False
        self.backoff = 0.0

    def handle(self, record: Any) -> str:
        """Trigger the run of one record: "triggered", "duplicate" or "skipped"; raises Retry."""
        rid = run_id(record.topic, record.partition, record.offset)
        try:
            conf = parse(record.value)
            outcome = self.airflow.trigger(DAG_ID, rid, conf)
        except Invalid as exc:
            log.warning("skipped %s: invalid request: %s", rid, exc)
            return "skipped"
        if outcome == "duplicate":
            log.info("%s was already triggered (409): nothing to do", rid)
        else:
            log.info("triggered %s %s conf=%s", DAG_ID, rid, json.dumps(conf, sort_keys=True))
        return outcome

    def commit(self, record: Any) -> None:
        from kafka.structs import OffsetAndMetadata, TopicPartition

        tp = TopicPartition(record.topic, record.partition)
        self.consumer.commit({tp: OffsetAndMetadata(record.offset + 1, "", -1)})

    def beat(self) -> None:
        assignment = sorted(f"{tp.topic}-{tp.partition}" for tp in self.consumer.assignment())
        if assignment:
            self.heartbeat.beat(assignment)

    def sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < deadline:
            self.beat()
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))

    def poll_once(self) -> None:
        batches = self.consumer.poll(timeout_ms=1000)
        self.beat()
        pending = {tp: list(records) for tp, records in batches.items()}
        failed: tuple[str, Retry] | None = None
        for records in pending.values():
            while records and not self.stopping and failed is None:
                record = records[0]
                try:
                    self.handle(record)
                except Retry as exc:
                    failed = (run_id(record.topic, record.partition, record.offset), exc)
                    break
                self.commit(record)
                records.pop(0)
                self.backoff = 0.0
                self.beat()
        # poll() moved past the whole batch: rewind each partition to its first
        # unhandled record, so nothing after a failure is skipped.
        for tp, records in pending.items():
            if records:
                self.consumer.seek(tp, records[0].offset)
        if failed is not None:
            self.backoff = min(MAX_BACKOFF, max(1.0, self.backoff * 2))
            log.warning("%s: %s; retrying in %.0fs", failed[0], failed[1], self.backoff)
            self.sleep(self.backoff)

    def run(self) -> None:
        log.info("consuming %s as group %s; triggering %s at %s as %s", TOPIC, GROUP, DAG_ID,
                 self.airflow.base_url, self.airflow.user)
        try:
            while not self.stopping:
                self.poll_once()
        finally:
            self.heartbeat.clear()
            self.consumer.close()
            log.info("stopped")


def main() -> int:
    from kafka import KafkaConsumer

    from skiff.native.context import Context
    from skiff.services import airflow, kafka

    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    ctx = Context.discover()
    s = ctx.settings
    consumer = KafkaConsumer(
        TOPIC, bootstrap_servers=kafka.bootstrap_servers(ctx), group_id=GROUP,
        client_id="skiff-training-trigger",
        # Offsets are committed by hand, after the trigger; a new group starts at the
        # beginning: replays are 409s, a request sent before the first start is not lost.
        enable_auto_commit=False, auto_offset_reset="earliest",
        # One request at a time: a trigger takes well under a second.
        max_poll_records=10,
    )
    heartbeat = Heartbeat(heartbeat_path(ctx.state))
    trigger = Trigger(consumer, Airflow(airflow.base_url(ctx), s.training_trigger_user,
                                        s.training_trigger_password.get_secret_value()), heartbeat)

    def stop(signum: int, _frame: Any) -> None:
        log.info("signal %d: finishing the current message, then stopping", signum)
        trigger.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    trigger.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
