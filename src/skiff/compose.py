"""Compose mode: the same platform through ``docker compose``, when an engine answers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import Any

from skiff.native import installing
from skiff.native.context import Context
from skiff.services import s3, traefik


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


# Where the image build finds what the native installer compiled on this machine
# (docker/Dockerfile mounts it; installing.go_binary copies from it).
SEED_DIR = ".build-seed"


def seed_builds(ctx: Context) -> list[str]:
    """Offer the image builds the Go programs this machine's native install compiled.

    The same installer, module and version: an image takes the binary instead of
    compiling it again (Traefik alone takes ~16 minutes on 2 cores). Returns the
    components seeded; none when nothing was installed natively.
    """
    seeded = []
    for built in (traefik.binary(ctx).parent.parent, s3.binary(ctx).parent.parent):
        if not installing.is_installed(built):
            continue
        dest = ctx.root / SEED_DIR / "components" / built.name
        if not installing.is_installed(dest):
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(built, dest, symlinks=True, copy_function=_link_or_copy)
        seeded.append(built.name)
    return seeded


def _link_or_copy(source: str, dest: str) -> None:
    try:
        os.link(source, dest)
    except OSError:  # another file system
        shutil.copy2(source, dest)


def up(ctx: Context, names: list[str], *, publish: bool = False) -> int:
    """Build what changed, start, and return once every health check passes."""
    seeded = seed_builds(ctx)
    if seeded:
        print(f"compose: the image builds reuse {', '.join(seeded)} from {ctx.cache / 'components'}")
    # --wait returns once every health check passes and init jobs have completed.
    return subprocess.call(command(ctx, "up", "--detach", "--build", "--wait", *names,
                                    publish=publish))


def down(ctx: Context) -> int:
    return subprocess.call(command(ctx, "down"))


def is_up(ctx: Context) -> bool:
    done = subprocess.run(command(ctx, "ps", "--quiet"), capture_output=True, text=True,
                          check=False)
    return done.returncode == 0 and bool(done.stdout.strip())


def containers(ctx: Context, *, publish: bool = False) -> list[dict[str, Any]]:
    """``docker compose ps --all``: one dict per container (Service, State, Health, ExitCode...)."""
    done = subprocess.run(command(ctx, "ps", "--all", "--format", "json", publish=publish),
                          capture_output=True, text=True, check=True)
    # One JSON object per line (Compose v2.21+), or one array (older).
    text = done.stdout.strip()
    if not text:
        return []
    return json.loads(text) if text.startswith("[") else [json.loads(line) for line in text.splitlines()]


def unhealthy(ctx: Context) -> list[str]:
    """What keeps the stack from being up: services not running healthy, init jobs that failed.
    Empty when every container is healthy or exited 0; ["nothing runs"] when none exists."""
    found = containers(ctx)
    if not found:
        return ["nothing runs"]
    problems = []
    for c in found:
        if c["State"] == "exited":
            if c["ExitCode"] != 0:
                problems.append(f"{c['Service']} exited with {c['ExitCode']}")
        elif c["State"] != "running" or c.get("Health") not in ("healthy", ""):
            problems.append(f"{c['Service']}: {c['State']} {c.get('Health')}")
    return problems
