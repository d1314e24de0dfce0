"""Redis: the broker between Airflow's scheduler and its Celery workers.

Natively it is Debian's ``redis-server`` (installed by `skiff install` as root), run with a
configuration file of our own (never the system's service); in Compose it is the
``redis`` image. Clients must give ``REDIS_PASSWORD``: the broker is how work
reaches the workers, so nobody else may put tasks on it. The password lives in
the configuration file (mode 0600), not on the command line where ``ps`` shows it.

Append-only persistence: a task queued while a worker restarts is still there
when it comes back (Celery acknowledges a message only once the task has run).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import quote

import redis

from skiff.files import PRIVATE, write_atomically
from skiff.native.context import Context
from skiff.native.spec import NotReady, Program, Service

PROGRAM = "redis-server"
# Celery's broker database; the result backend is Airflow's PostgreSQL.
BROKER_DB = 0


def binary() -> Path:
    found = shutil.which(PROGRAM) or "/usr/bin/redis-server"
    return Path(found)


def install(ctx: Context) -> None:
    if not binary().exists():
        raise RuntimeError("redis: redis-server not found; install Debian's redis-server "
                           "(apt-get install redis-server, as `skiff install` does as root)")


def config_file(ctx: Context) -> Path:
    return ctx.conf_dir("redis") / "redis.conf"


def render_config(ctx: Context) -> str:
    s = ctx.settings
    # Redis' own quoting: a double-quoted string with backslash escapes.
    password = s.redis_password.get_secret_value().replace("\\", "\\\\").replace('"', '\\"')
    lines = {
        "bind": s.bind_host,
        "port": str(s.redis_port),
        "dir": f'"{ctx.data_dir("redis")}"',
        "requirepass": f'"{password}"',
        # In the foreground, logging to stdout: supervisord keeps its output (no pid file).
        "daemonize": "no",
        "logfile": '""',
        "appendonly": "yes",
        "appendfsync": "everysec",
        # A broker's queues must not be evicted to make room: refuse writes instead.
        "maxmemory-policy": "noeviction",
        "protected-mode": "yes",
    }
    header = "# Written by skiff (services/redis.py) before each start: edit .env, not this.\n"
    return header + "".join(f"{k} {v}\n" for k, v in lines.items())


def prepare(ctx: Context) -> None:
    install(ctx)
    path = config_file(ctx)
    write_atomically(path, render_config(ctx), PRIVATE)


def programs(ctx: Context) -> list[Program]:
    return [Program(name="redis", command=[str(binary()), str(config_file(ctx))])]


def broker_url(ctx: Context) -> str:
    """Celery's broker URL (kombu's redis transport), the password URL-quoted."""
    s = ctx.settings
    password = quote(s.redis_password.get_secret_value(), safe="")
    return f"redis://:{password}@{s.host('redis')}:{s.redis_port}/{BROKER_DB}"


def ready(ctx: Context) -> None:
    s = ctx.settings
    client = redis.Redis(host=s.host("redis"), port=s.redis_port,
                         password=s.redis_password.get_secret_value(),
                         socket_connect_timeout=3, socket_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise NotReady(f"PING: {type(exc).__name__}: {exc}") from exc
    finally:
        client.close()


def url(ctx: Context) -> str:
    return f"redis://{ctx.settings.host('redis')}:{ctx.settings.redis_port}"


SERVICE = Service(
    name="redis",
    packages=("redis-server",),
    description="Redis: the broker of Airflow's Celery workers",
    programs=programs,
    ready=ready,
    url=url,
    ports=lambda ctx: [ctx.settings.redis_port],
    install=install,
    prepare=prepare,
    start_timeout=30,
)
