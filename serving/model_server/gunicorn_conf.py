"""gunicorn settings and hooks: ``gunicorn -c python:serving.model_server.gunicorn_conf APP``.

The command line overrides these (the native service passes --bind and the
worker settings); the hooks are why this file exists: the Prometheus
multiprocess folder must be emptied before workers start and told when one
dies, and a stopping worker should hand its last batch to Kafka.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

bind = os.environ.get("MODEL_SERVER_BIND", "0.0.0.0:8000")
worker_class = "gthread"
workers = int(os.environ.get("MODEL_SERVER_WORKERS", "2"))
threads = int(os.environ.get("MODEL_SERVER_THREADS", "4"))
# Keep-alive clients (load balancers, the benchmarks) reuse connections.
keepalive = 5
graceful_timeout = 20
# gunicorn 25.1+ opens a control socket at ~/.gunicorn/gunicorn.ctl by default: one
# path for every gunicorn of the user (the ingest service, a second stack), unused here.
control_socket_disable = True


def on_starting(server: Any) -> None:
    """Forget the previous run's per-worker metric files (counters restart at zero)."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        path = Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()


def child_exit(server: Any, worker: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def worker_exit(server: Any, worker: Any) -> None:
    """Stop the worker's threads cleanly: what the publisher has in hand reaches Kafka."""
    app = getattr(worker, "wsgi", None)
    state = getattr(app, "extensions", {}).get("model_server")
    if state is not None:
        state.close()
