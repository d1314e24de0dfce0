"""Ingest: the capture consumer, Kafka ``prediction-requests`` -> Cassandra (serving/ingest).

Natively it runs in the CLI's own venv (``sys.executable``), which has kafka-python
and cassandra-driver: nothing to install. It is ready once it has joined its
consumer group and got its partitions: it then writes a ready file (its pid, group
and partitions), which the probe checks along with the process being alive.
Its Prometheus metrics (lag per partition, serving/ingest/metrics.py) are served
on ``ingest_metrics_port`` for Prometheus to scrape; the probe checks them too.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import psutil

from skiff.bracelet.events import TOPIC
from skiff.native.context import Context
from skiff.native.probes import http_ok
from skiff.native.spec import NotReady, Program, Service

GROUP = "skiff-ingest"  # serving.ingest.config.GROUP


def ready_file(ctx: Context) -> Path:
    return ctx.data_dir("ingest") / "ready.json"


def prepare(ctx: Context) -> None:
    # A file left by an earlier run (killed before it could remove it) says nothing now.
    ready_file(ctx).unlink(missing_ok=True)


def programs(ctx: Context) -> list[Program]:
    return [Program(
        name="ingest",
        command=[sys.executable, "-m", "serving.ingest", "--ready-file", str(ready_file(ctx)),
                 "--metrics-address", f"{ctx.settings.bind_host}:{ctx.settings.ingest_metrics_port}"],
        # Log lines reach `skiff logs ingest` as they are written.
        env={"PYTHONUNBUFFERED": "1"},
        directory=ctx.root,
        # A batch in flight is finished (bounded by the driver's request timeout) and committed.
        stop_wait=30,
    )]


def ready(ctx: Context) -> None:
    path = ready_file(ctx)
    try:
        doc = json.loads(path.read_text())
        pid = int(doc["pid"])
    except FileNotFoundError:
        raise NotReady("not in its consumer group yet (no partition assignment)") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise NotReady(f"unreadable {path}: {exc}") from exc
    try:
        alive = psutil.Process(pid).is_running() and "serving.ingest" in psutil.Process(pid).cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        alive = False
    if not alive:
        raise NotReady(f"the consumer that wrote {path.name} (pid {pid}) is gone")
    http_ok(metrics_url(ctx))


def metrics_url(ctx: Context) -> str:
    """Where Prometheus scrapes the consumer's lag."""
    return f"http://{ctx.settings.host('ingest')}:{ctx.settings.ingest_metrics_port}/metrics"


def url(ctx: Context) -> str:
    return f"kafka://{ctx.settings.host('kafka')}:{ctx.settings.kafka_port}/{TOPIC}"


SERVICE = Service(
    name="ingest",
    description=f"Capture ingest: Kafka {TOPIC} -> Cassandra prediction_events (group {GROUP})",
    programs=programs,
    ready=ready,
    url=url,
    ports=lambda ctx: [ctx.settings.ingest_metrics_port],
    depends_on=("kafka", "cassandra"),
    prepare=prepare,
    start_timeout=90.0,
)
