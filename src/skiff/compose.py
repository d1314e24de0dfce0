"""Compose mode: the same platform through ``docker compose``, when an engine answers."""

from __future__ import annotations

import os
import shutil
import subprocess

from skiff.native.context import Context


def engine_answers() -> bool:
    """True when a Docker engine (not just the client) responds."""
    if shutil.which("docker") is None:
        return False
    try:
        done = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"],
                              capture_output=True, timeout=5, check=False)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


# Publishes every service on 127.0.0.1, for debugging and the tests against Compose.
PORTS_FILE = "docker-compose.ports.yml"


def running_in_compose_mode() -> bool:
    """Whether the test suite runs against Compose (SKIFF_TEST_MODE=compose)."""
    return os.environ.get("SKIFF_TEST_MODE") == "compose"


def command(ctx: Context, *args: str, publish: bool = False) -> list[str]:
    """``docker compose`` for this checkout, with the ports file when ``publish``."""
    files = ["-f", str(ctx.root / "docker-compose.yml")]
    if publish:
        files += ["-f", str(ctx.root / PORTS_FILE)]
    return ["docker", "compose", "--project-directory", str(ctx.root), *files, *args]


def up(ctx: Context, services: list[str], *, publish: bool = False) -> int:
    """Build what changed, start, and return once every health check passes."""
    # --wait returns once every health check passes and init jobs have completed.
    return subprocess.call(command(ctx, "up", "--detach", "--build", "--wait", *services,
                                    publish=publish))


def down(ctx: Context) -> int:
    return subprocess.call(command(ctx, "down"))


def is_up(ctx: Context) -> bool:
    done = subprocess.run(command(ctx, "ps", "--quiet"), capture_output=True, text=True,
                          check=False)
    return done.returncode == 0 and bool(done.stdout.strip())
