"""The `skiff` command against the running stack: status, stop/start, faults."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from skiff.native.context import Context

pytestmark = pytest.mark.integration


def skiff(*args: str, env: dict[str, str] | None = None,
          timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "skiff.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "COLUMNS": "200", **(env or {})},
                          check=False)


def _row(status_out: str, service: str) -> list[str]:
    for line in status_out.splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if cells and cells[0] == service:
            return cells
    raise AssertionError(f"{service} not in status:\n{status_out}")


def test_status_lists_every_service_healthy_with_its_url(stack: Context) -> None:
    done = skiff("status")
    assert done.returncode == 0, done.stdout + done.stderr
    assert _row(done.stdout, "mlflow")[1:4] == ["running", "healthy", "http://127.0.0.1:5000/mlflow"]


def test_stopped_service_shows_in_status_and_comes_back(stack: Context) -> None:
    stopped = skiff("down", "kafka")
    assert stopped.returncode == 0, stopped.stderr
    status = skiff("status")
    assert status.returncode == 1
    assert _row(status.stdout, "kafka")[1:3] == ["stopped", "-"]
    assert _row(status.stdout, "postgres")[1:3] == ["running", "healthy"]

    assert _row(status.stdout, "ingest")[1:3] == ["stopped", "-"], "dependents stop with it"

    started = skiff("up", "kafka", "--native")
    assert started.returncode == 0, started.stderr
    assert _row(skiff("status").stdout, "kafka")[1:3] == ["running", "healthy"]
    # `up` with no name brings back the dependents `down kafka` stopped.
    assert skiff("up", "--native").returncode == 0
    status = skiff("status")
    assert status.returncode == 0, status.stdout


def test_port_in_use_is_one_line_naming_service_port_and_owner(stack: Context, tmp_path: Path) -> None:
    # A second stack in another state folder collides with the running one on 5432.
    done = skiff("up", "postgres", "--native", env={"SKIFF_STATE": str(tmp_path)})
    assert done.returncode == 1
    first = done.stderr.strip().splitlines()[0]
    port = stack.settings.postgres_port
    assert first.startswith(f"error: postgres: port {port} on 127.0.0.1 is already in use by postgres")


def test_logs_of_an_unknown_service_name_the_known_ones(stack: Context) -> None:
    done = skiff("logs", "kafak")
    assert done.returncode == 1
    assert "unknown service 'kafak'" in done.stderr and "airflow-scheduler" in done.stderr


def test_logs_show_the_service_output(stack: Context) -> None:
    done = skiff("logs", "s3", "-n", "200")
    assert done.returncode == 0
    assert "initializing internal IAM" in done.stdout


def test_missing_java_is_named_before_anything_starts(stack: Context, tmp_path: Path) -> None:
    env = {"SKIFF_STATE": str(tmp_path), "PATH": "/nonexistent", "JAVA_HOME": "",
           "KAFKA_PORT": "19092", "KAFKA_CONTROLLER_PORT": "19093"}
    done = skiff("up", "kafka", "--native", env=env)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[0].startswith("error: kafka: `java` not found")
    assert not (tmp_path / "supervisor.sock").exists()

