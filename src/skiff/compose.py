"""Compose mode: the same platform through ``docker compose``, when an engine answers."""

from __future__ import annotations

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


def _compose(ctx: Context, *args: str) -> list[str]:
    return ["docker", "compose", "--project-directory", str(ctx.root), *args]


def up(ctx: Context, services: list[str]) -> int:
    # --wait returns once every health check passes and init jobs have completed.
    return subprocess.call(_compose(ctx, "up", "--detach", "--wait", *services))


def down(ctx: Context) -> int:
    return subprocess.call(_compose(ctx, "down"))


def is_up(ctx: Context) -> bool:
    done = subprocess.run(_compose(ctx, "ps", "--quiet"), capture_output=True, text=True,
                          check=False)
    return done.returncode == 0 and bool(done.stdout.strip())
