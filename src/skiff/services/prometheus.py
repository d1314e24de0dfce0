"""Prometheus: scrapes the model server, the ingest's consumer lag and the notifications.

Why Prometheus, and why one configuration file for both modes:
docs/decisions/0019-prometheus.md. Natively it is Debian's ``prometheus`` package
(installed by `skiff install` as root; never the package's own systemd instance), run with a copy
of compose/prometheus/prometheus.yml whose targets are this host's addresses; in
Compose it is the official image reading that file as written.

It serves under ``/prometheus`` (``--web.route-prefix``), where Traefik publishes
it to the realm roles admin and data-engineer; natively it listens on the bind
host only. It depends on nothing: a target that is down is a scrape with ``up 0``,
which is what Prometheus is for.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from skiff.native.context import Context
from skiff.native.probes import http_ok
from skiff.native.spec import Program, Service
from skiff.settings import Settings

NAME = "prometheus"
PACKAGE = "prometheus"  # Debian's
PREFIX = "/prometheus"
# How long samples are kept (the platform's demo scale: days, not months).
RETENTION = "15d"

# Each scrape job of compose/prometheus/prometheus.yml -> its native target (host:port).
NATIVE_TARGETS: dict[str, Callable[[Settings], str]] = {
    "prometheus": lambda s: f"{s.host('prometheus')}:{s.prometheus_port}",
    "model-server": lambda s: f"{s.host('model_server')}:{s.model_server_port}",
    "ingest": lambda s: f"{s.host('ingest')}:{s.ingest_metrics_port}",
    "notifications": lambda s: f"{s.host('notifications')}:{s.notifications_port}",
}


def binary() -> Path:
    return Path(shutil.which(PACKAGE) or "/usr/bin/prometheus")


def install(ctx: Context) -> None:
    if not binary().exists():
        raise RuntimeError(f"prometheus: the prometheus binary was not found; install Debian's "
                           f"{PACKAGE} package (apt-get install {PACKAGE}, as `skiff install` does as root)")


def native_config(ctx: Context) -> dict[str, Any]:
    """compose/prometheus/prometheus.yml with each job's targets at this host's address."""
    config: dict[str, Any] = yaml.safe_load(ctx.compose_file(NAME, "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    if set(jobs) != set(NATIVE_TARGETS):
        raise RuntimeError(f"prometheus: the jobs of compose/prometheus/prometheus.yml "
                           f"({', '.join(sorted(jobs))}) are not those skiff.services.prometheus "
                           f"knows ({', '.join(sorted(NATIVE_TARGETS))})")
    for name, job in jobs.items():
        job["static_configs"] = [{"targets": [NATIVE_TARGETS[name](ctx.settings)]}]
    return config


def config_path(ctx: Context) -> Path:
    return ctx.conf_dir(NAME) / "prometheus.yml"


def prepare(ctx: Context) -> None:
    install(ctx)
    header = "# Written by `skiff up` from compose/prometheus/prometheus.yml; edit that file.\n"
    config_path(ctx).write_text(header + yaml.safe_dump(native_config(ctx), sort_keys=False))


def external_url(settings: Settings) -> str:
    """The address people reach it at (links in its UI), through Traefik."""
    return f"{settings.public_url}{PREFIX}/"


def programs(ctx: Context) -> list[Program]:
    s = ctx.settings
    return [Program(
        name=NAME,
        command=[str(binary()),
                 f"--config.file={config_path(ctx)}",
                 f"--storage.tsdb.path={ctx.data_dir(NAME)}",
                 f"--storage.tsdb.retention.time={RETENTION}",
                 f"--web.listen-address={s.bind_host}:{s.prometheus_port}",
                 f"--web.external-url={external_url(s)}",
                 f"--web.route-prefix={PREFIX}"],
        directory=ctx.data_dir(NAME),
    )]


def url(ctx: Context) -> str:
    """The internal address, API included: {url}/api/v1/..."""
    return f"http://{ctx.settings.host(NAME)}:{ctx.settings.prometheus_port}{PREFIX}"


def ready(ctx: Context) -> None:
    # /-/ready: the TSDB is open and the configuration loaded (/-/healthy is only "alive").
    http_ok(f"{url(ctx)}/-/ready")


SERVICE = Service(
    name=NAME,
    packages=("prometheus",),
    description="Prometheus: metrics of the model server, the ingest's lag, the notifications",
    programs=programs,
    ready=ready,
    url=url,
    ports=lambda ctx: [ctx.settings.prometheus_port],
    install=install,
    prepare=prepare,
    start_timeout=60,
)
