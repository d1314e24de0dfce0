"""training-trigger: turns each message on ``training-requests`` into one bracelet_training run.

One Python process from the CLI's own venv (it has kafka-python and httpx), so
there is nothing to install. It is ready once it has joined its consumer group
and holds partitions: it then rewrites a heartbeat file every second, which the
probe reads. See :mod:`skiff.bracelet.training_trigger`.
"""

from __future__ import annotations

import json
import sys
import time

from skiff.bracelet.training_trigger import GROUP, TOPIC, heartbeat_path
from skiff.native.context import Context
from skiff.native.spec import NotReady, Program, Service

NAME = "training-trigger"
# The loop beats every second; a few seconds of a slow poll or trigger are normal.
STALE_AFTER = 30.0


def prepare(ctx: Context) -> None:
    # A heartbeat left by a killed run says nothing about the next one.
    heartbeat_path(ctx.state).unlink(missing_ok=True)


def programs(ctx: Context) -> list[Program]:
    return [Program(
        name=NAME,
        command=[sys.executable, "-m", "skiff.bracelet.training_trigger"],
        env={"SKIFF_STATE": str(ctx.state), "SKIFF_CACHE": str(ctx.cache), "PYTHONUNBUFFERED": "1"},
        # Context.discover() finds the checkout (versions.env, .env) from here.
        directory=ctx.root,
        stop_wait=30,
        health=_heartbeat_fresh,
    )]


def ready(ctx: Context) -> None:
    from skiff.native.supervisor import Supervisor

    state = Supervisor(ctx).info(NAME).state
    if state != "RUNNING":
        raise NotReady(f"process is {state}")
    _heartbeat_fresh(ctx)


def _heartbeat_fresh(ctx: Context) -> None:
    """The consumer loop's own proof of life (in a container, skiff-run knows the process)."""
    path = heartbeat_path(ctx.state)
    try:
        beat = json.loads(path.read_text())
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        raise NotReady(f"not in consumer group {GROUP} yet (no {path.name})") from None
    except (OSError, ValueError) as exc:
        raise NotReady(f"heartbeat unreadable: {exc}") from exc
    if age > STALE_AFTER:
        raise NotReady(f"heartbeat {age:.0f}s old: the consumer loop is stuck or gone")
    if not beat.get("assignment"):
        raise NotReady(f"no partitions of {TOPIC} assigned")


def url(ctx: Context) -> str:
    return f"kafka://{ctx.settings.host('kafka')}:{ctx.settings.kafka_port}/{TOPIC}"


SERVICE = Service(
    name=NAME,
    description=f"Triggers bracelet_training for each message on {TOPIC}",
    programs=programs,
    ready=ready,
    url=url,
    ports=lambda ctx: [],
    depends_on=("kafka", "airflow"),
    prepare=prepare,
    start_timeout=90.0,
)
