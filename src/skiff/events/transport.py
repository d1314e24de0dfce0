"""Where events go: Kafka (the event) and S3 (bytes too big or too binary to inline).

Addresses come from the environment Airflow tasks and notebook servers get
(KAFKA_HOST/KAFKA_PORT, S3_HOST/S3_PORT/S3_ACCESS_KEY/S3_SECRET_KEY/S3_REGION) and,
when those are not set, from the Skiff checkout's settings (a developer's shell).
SKIFF_EVENTS_TOPIC, SKIFF_EVENTS_BUCKET and SKIFF_EVENTS_INLINE_BYTES override the
settings' events_topic, events_bucket and events_inline_bytes.
"""

from __future__ import annotations

import atexit
import io
import json
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_TOPIC = "platform-events"
DEFAULT_BUCKET = "events"
DEFAULT_INLINE_BYTES = 65536
# How long one emit waits for Kafka's acknowledgement (and for a first connection).
SEND_TIMEOUT_S = 15.0
# How long a first connection may take before Kafka counts as unreachable.
BOOTSTRAP_TIMEOUT_S = 5.0


class EventsError(RuntimeError):
    """An event could not be stored (Kafka or S3 unreachable or refusing)."""


@dataclass(frozen=True)
class Config:
    bootstrap_servers: str
    topic: str
    bucket: str
    inline_bytes: int
    s3: Mapping[str, str]


def _settings() -> Any:
    """Skiff's settings from the checkout around the working directory, or None."""
    try:
        from skiff.native.context import Context

        return Context.discover().settings
    except Exception:  # no checkout here: the environment must do
        return None


def config(env: Mapping[str, str] | None = None) -> Config:
    env = os.environ if env is None else env
    settings = None
    if not env.get("KAFKA_HOST") or not env.get("S3_ACCESS_KEY"):
        settings = _settings()
    if env.get("KAFKA_HOST"):
        bootstrap = f"{env['KAFKA_HOST']}:{env.get('KAFKA_PORT', '9092')}"
    elif settings is not None:
        bootstrap = f"{settings.host('kafka')}:{settings.kafka_port}"
    else:
        raise EventsError("no Kafka address: set KAFKA_HOST and KAFKA_PORT (Airflow tasks and "
                          "notebook servers have them) or run inside a Skiff checkout")
    if env.get("S3_ACCESS_KEY"):
        s3 = {key: env.get(key, "") for key in
              ("S3_HOST", "S3_PORT", "S3_ACCESS_KEY", "S3_SECRET_KEY", "S3_REGION")}
    elif settings is not None:
        s3 = {"S3_HOST": settings.host("s3"), "S3_PORT": str(settings.s3_port),
              "S3_ACCESS_KEY": settings.s3_access_key,
              "S3_SECRET_KEY": settings.s3_secret_key.get_secret_value(),
              "S3_REGION": settings.s3_region}
    else:
        s3 = {}
    topic = env.get("SKIFF_EVENTS_TOPIC") or (settings.events_topic if settings else DEFAULT_TOPIC)
    bucket = env.get("SKIFF_EVENTS_BUCKET") or (
        settings.events_bucket if settings else DEFAULT_BUCKET)
    inline = env.get("SKIFF_EVENTS_INLINE_BYTES")
    inline_bytes = int(inline) if inline else (
        settings.events_inline_bytes if settings else DEFAULT_INLINE_BYTES)
    return Config(bootstrap, topic, bucket, inline_bytes, s3)


class Transport:
    """One Kafka producer (and S3 client) per process, closed at exit."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self._producer: Any = None
        self._s3: Any = None
        self._lock = threading.Lock()

    def producer(self) -> Any:
        with self._lock:
            if self._producer is None:
                from kafka import KafkaProducer
                from kafka.errors import KafkaError

                options: dict[str, Any] = {}
                # kafka-python 3 (Airflow's and the workspace's) tries to bootstrap for
                # 30 s by default: a notebook would hang that long before saying Kafka
                # is away. 2.x (the serving venv) has no such setting and gives up after
                # its 2 s version probe.
                if "bootstrap_timeout_ms" in KafkaProducer.DEFAULT_CONFIG:
                    options["bootstrap_timeout_ms"] = int(BOOTSTRAP_TIMEOUT_S * 1000)
                try:
                    self._producer = KafkaProducer(
                        bootstrap_servers=self.cfg.bootstrap_servers,
                        client_id="skiff-events",
                        # Every replica has it before emit() returns: nothing is lost
                        # silently once the caller has been told it was sent.
                        acks="all", retries=5,
                        max_block_ms=int(SEND_TIMEOUT_S * 1000),
                        key_serializer=lambda k: k.encode(),
                        value_serializer=lambda v: json.dumps(v, separators=(",", ":"))
                        .encode(),
                        **options,
                    )
                except KafkaError as exc:
                    raise EventsError(f"Kafka at {self.cfg.bootstrap_servers} is unreachable "
                                      f"({exc!r}): the event was not sent") from exc
            return self._producer

    def send(self, event: dict[str, Any]) -> None:
        from kafka.errors import KafkaError

        producer = self.producer()
        try:
            producer.send(self.cfg.topic, key=event["run"], value=event).get(
                timeout=SEND_TIMEOUT_S)
        except KafkaError as exc:
            raise EventsError(f"Kafka at {self.cfg.bootstrap_servers} did not take the event "
                              f"for topic {self.cfg.topic!r} ({exc!r})") from exc

    def s3(self) -> Any:
        with self._lock:
            if self._s3 is None:
                if not self.cfg.s3.get("S3_ACCESS_KEY"):
                    raise EventsError("no S3 credentials for the event's content: set S3_HOST, "
                                      "S3_PORT, S3_ACCESS_KEY, S3_SECRET_KEY")
                from minio import Minio

                s3 = self.cfg.s3
                self._s3 = Minio(f"{s3.get('S3_HOST') or '127.0.0.1'}:{s3.get('S3_PORT') or '7070'}",
                                 access_key=s3["S3_ACCESS_KEY"], secret_key=s3["S3_SECRET_KEY"],
                                 region=s3.get("S3_REGION") or None, secure=False)
            return self._s3

    def upload(self, key: str, content: bytes, content_type: str) -> str:
        from minio.error import MinioException
        from urllib3.exceptions import HTTPError

        try:
            self.s3().put_object(self.cfg.bucket, key, io.BytesIO(content), len(content),
                                 content_type=content_type)
        except (MinioException, HTTPError, OSError) as exc:
            raise EventsError(f"could not store the event's content at "
                              f"s3://{self.cfg.bucket}/{key} ({exc}); does bucket "
                              f"{self.cfg.bucket!r} exist (`skiff bootstrap s3`)?") from exc
        return f"s3://{self.cfg.bucket}/{key}"

    def close(self) -> None:
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.close(timeout=SEND_TIMEOUT_S)
            except Exception:  # at exit; every send was acknowledged already
                log.debug("closing the events producer failed", exc_info=True)


_transport: Transport | None = None
_transport_pid = 0
_global_lock = threading.Lock()


def shared() -> Transport:
    """This process's transport (a forked child makes its own: sockets are not shared)."""
    global _transport, _transport_pid
    with _global_lock:
        if _transport is None or _transport_pid != os.getpid():
            _transport = Transport(config())
            _transport_pid = os.getpid()
            atexit.register(_transport.close)
        return _transport


def reset() -> None:
    """Close and forget the cached transport (tests; a changed environment)."""
    global _transport
    with _global_lock:
        old, _transport = _transport, None
    if old is not None:
        old.close()
