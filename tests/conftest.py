"""Shared fixtures. The ``stack`` fixture gives integration tests a real platform.

It reuses a stack that is already healthy (``skiff up`` before ``pytest`` makes
test runs fast) and otherwise starts the native stack once per session and
stops it at the end. Where a Docker engine answers, SKIFF_TEST_MODE=compose runs
the suite against ``docker compose up`` instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from skiff import compose
from skiff.envfile import write_env
from skiff.native import launcher
from skiff.native.context import Context

if compose.running_in_compose_mode():
    # Against Compose the services are published on loopback (docker-compose.ports.yml),
    # at their native ports but Kafka's, whose host-side listener is its own.
    os.environ.setdefault("KAFKA_PORT", os.environ.get("KAFKA_EXTERNAL_PORT", "19092"))


@pytest.fixture(scope="session")
def ctx() -> Context:
    context = Context.discover()
    if not (context.root / ".env").exists():
        write_env(context.root)
    return context


@pytest.fixture(scope="session")
def stack(ctx: Context) -> Iterator[Context]:
    if compose.running_in_compose_mode():
        if not compose.engine_answers():
            pytest.fail("SKIFF_TEST_MODE=compose but no Docker engine answers", pytrace=False)
        # A stack already up and healthy (make test-compose just built and started it) is used as it is.
        if compose.unhealthy(ctx):
            assert compose.up(ctx, [], publish=True) == 0, "docker compose up --wait failed"
        yield ctx
        return
    rows = launcher.status(ctx)
    if all(r.health == "healthy" for r in rows):
        yield ctx
        return
    # Only what this session starts is stopped at its end: services someone was
    # already running (a developer's stack, half up) stay as they were.
    running_before = {r.service for r in rows if r.state == "running"}
    try:
        launcher.up(ctx)
    except launcher.ServiceError as exc:
        pytest.fail(f"the native stack did not come up: {exc}\n{exc.log_tail}", pytrace=False)
    yield ctx
    if os.environ.get("SKIFF_KEEP_STACK"):
        return
    if not running_before:
        launcher.down(ctx)
    else:
        launcher.down(ctx, [r.service for r in rows if r.service not in running_before])
