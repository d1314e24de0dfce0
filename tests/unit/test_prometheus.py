"""Prometheus' one configuration, checked without Prometheus: targets and flags, natively and in Compose."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from skiff.native.context import Context
from skiff.services import REGISTRY, prometheus
from skiff.settings import Settings
from tests.unit.test_compose_file import assert_listens

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "compose/prometheus/prometheus.yml"


@pytest.fixture
def ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Context:
    for name, field in Settings.model_fields.items():
        if field.is_required():
            monkeypatch.setenv(name.upper(), "x")
    for name, value in {"BIND_HOST": "127.0.0.1", "HTTPS_PORT": "9443", "PUBLIC_HOST": "skiff.example.org",
                        "PROMETHEUS_PORT": "9191", "INGEST_METRICS_PORT": "8421"}.items():
        monkeypatch.setenv(name, value)
    return Context(root=ROOT, cache=tmp_path / "cache", state=tmp_path / "state")


@pytest.fixture
def compose_config() -> dict[str, Any]:
    return yaml.safe_load(CONFIG.read_text())  # type: ignore[no-any-return]


def jobs(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {job["job_name"]: job for job in config["scrape_configs"]}


def test_native_targets_are_this_hosts_addresses(ctx: Context) -> None:
    s = ctx.settings
    targets = {name: job["static_configs"] for name, job in jobs(prometheus.native_config(ctx)).items()}
    assert targets == {
        "prometheus": [{"targets": ["127.0.0.1:9191"]}],
        "model-server": [{"targets": [f"127.0.0.1:{s.model_server_port}"]}],
        "ingest": [{"targets": ["127.0.0.1:8421"]}],
        "notifications": [{"targets": [f"127.0.0.1:{s.notifications_port}"]}],
    }


def test_only_the_targets_differ_between_the_modes(ctx: Context, compose_config: dict[str, Any]) -> None:
    native = prometheus.native_config(ctx)
    for config in (native, compose_config):
        for job in config["scrape_configs"]:
            job.pop("static_configs")
    assert native == compose_config


def test_compose_targets_are_compose_services_on_their_native_ports(
        compose_ctx: Context, compose_doc: dict[str, Any]) -> None:
    for name, job in jobs(prometheus.native_config(compose_ctx)).items():
        [target] = job["static_configs"][0]["targets"]
        host, _, port = target.partition(":")
        # Each job scrapes the container of the program it is named after.
        assert host == name, f"{name}: {target}"
        assert_listens(compose_ctx, compose_doc, host, int(port), name)


def test_its_own_metrics_are_under_the_route_prefix(compose_config: dict[str, Any]) -> None:
    assert jobs(compose_config)["prometheus"]["metrics_path"] == f"{prometheus.PREFIX}/metrics"


def test_in_compose_it_listens_on_its_container_under_the_public_prefix(compose_ctx: Context) -> None:
    [program] = prometheus.programs(compose_ctx)
    flags = dict(arg.removeprefix("--").split("=", 1) for arg in program.command if arg.startswith("--"))
    s = compose_ctx.settings
    assert flags["web.listen-address"] == f"0.0.0.0:{s.prometheus_port}"
    assert flags["web.route-prefix"] == prometheus.PREFIX
    assert flags["web.external-url"] == f"{s.public_url}{prometheus.PREFIX}/"
    # Its data is where the compose volume is mounted (SKIFF_STATE/data/prometheus).
    assert flags["storage.tsdb.path"] == str(compose_ctx.state / "data" / "prometheus")


def test_the_native_copy_is_written_from_the_compose_file(
        ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prometheus, "binary", lambda: Path("/bin/sh"))
    prometheus.prepare(ctx)
    written = prometheus.config_path(ctx).read_text()
    assert written.startswith("# Written by `skiff up` from compose/prometheus/prometheus.yml")
    assert yaml.safe_load(written) == prometheus.native_config(ctx)


def test_a_job_without_a_native_address_is_a_clear_error(
        ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prometheus, "NATIVE_TARGETS", {"model-server": lambda s: "x:1"})
    with pytest.raises(RuntimeError, match=r"jobs of compose/prometheus/prometheus\.yml"):
        prometheus.native_config(ctx)


def test_a_missing_binary_names_the_debian_package(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prometheus, "binary", lambda: Path("/nonexistent/prometheus"))
    with pytest.raises(RuntimeError, match=r"apt-get install prometheus"):
        prometheus.install(ctx)


def test_it_is_a_service_published_behind_traefik() -> None:
    names = list(REGISTRY)
    assert names.index("prometheus") < names.index("traefik")
