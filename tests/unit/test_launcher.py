"""The launcher with real supervisord and small stand-in programs (no platform services).

These prove the launcher's own promises: a dead process or a failing probe gives a
one-line error with the log's tail, and a failed ``up`` leaves nothing running.
"""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from skiff.native import launcher
from skiff.native.context import Context
from skiff.native.launcher import ServiceError
from skiff.native.spec import NotReady, Program, Service
from skiff.native.supervisor import Supervisor

pytestmark = pytest.mark.unit


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listening(port: int) -> Service:
    """A service whose process serves HTTP on ``port`` and is ready once it answers."""

    def ready(ctx: Context) -> None:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                raise NotReady(f"nothing on {port}")

    return Service(
        name="web", description="a web server",
        programs=lambda ctx: [Program("web", [sys.executable, "-m", "http.server", str(port),
                                              "--bind", "127.0.0.1"])],
        ready=ready, url=lambda ctx: f"http://127.0.0.1:{port}", ports=lambda ctx: [port],
        start_timeout=20,
    )


def _crashing() -> Service:
    return Service(
        name="crasher", description="exits at once", depends_on=("web",),
        programs=lambda ctx: [Program("crasher", ["sh", "-c", "echo 'boom: bad config'; exit 3"])],
        ready=lambda ctx: (_ for _ in ()).throw(NotReady("never")),
        url=lambda ctx: "-", ports=lambda ctx: [], start_timeout=20,
    )


def _never_ready() -> Service:
    def ready(ctx: Context) -> None:
        raise NotReady("health check says no")

    return Service(
        name="stuck", description="runs but never becomes healthy",
        programs=lambda ctx: [Program("stuck", ["sh", "-c", "echo waiting forever; exec sleep 600"])],
        ready=ready, url=lambda ctx: "-", ports=lambda ctx: [], start_timeout=3,
    )


@pytest.fixture()
def ctx(tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Context]:
    # Settings are read from the environment: the launcher needs bind_host only.
    from skiff.envfile import GENERATORS

    for key in GENERATORS:
        monkeypatch.setenv(key, "unit-test")
    context = Context(root=tmp_path, cache=tmp_path / "cache", state=tmp_path / "state")
    (tmp_path / "versions.env").write_text((root / "versions.env").read_text())
    yield context
    Supervisor(context).shutdown()


def test_up_waits_for_readiness_and_status_reports_it(ctx: Context) -> None:
    port = _free_port()
    registry = {"web": _listening(port)}
    rows = launcher.up(ctx, registry=registry)
    assert [(r.service, r.state, r.health) for r in rows] in (
        [("web", "running", "healthy")], [("web", "starting", "healthy")])
    launcher.down(ctx, registry=registry)
    assert [(r.service, r.state) for r in launcher.status(ctx, registry)] == [("web", "stopped")]


def test_a_process_that_dies_is_named_with_its_log_and_nothing_is_left_running(ctx: Context) -> None:
    port = _free_port()
    registry = {"web": _listening(port), "crasher": _crashing()}
    with pytest.raises(ServiceError) as failed:
        launcher.up(ctx, registry=registry)
    assert str(failed.value).startswith("crasher: process crasher is ")
    assert "boom: bad config" in failed.value.log_tail
    # The healthy dependency started by this call was stopped again.
    assert launcher.port_owner("127.0.0.1", port) is None


def test_a_failing_health_check_times_out_with_the_reason(ctx: Context) -> None:
    with pytest.raises(ServiceError) as failed:
        launcher.up(ctx, registry={"stuck": _never_ready()})
    assert str(failed.value) == "stuck: not ready after 3s: health check says no"
    assert "waiting forever" in failed.value.log_tail
    assert not any("sleep 600" in " ".join(p.cmdline()) for p in psutil.process_iter(["cmdline"])
                   if p.info["cmdline"])


def test_a_port_in_use_stops_up_before_anything_starts(ctx: Context) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with pytest.raises(ServiceError, match=f"web: port {port} on 127.0.0.1 is already in use by"):
            launcher.up(ctx, registry={"web": _listening(port)})
    assert not Supervisor(ctx).is_running()


def test_down_stops_children_that_ignore_sigterm(ctx: Context) -> None:
    # Like Airflow's task runners: a child that traps TERM and a grandchild in its own session.
    script = "trap '' TERM; setsid sh -c \"trap '' TERM; sleep 500\" & sleep 400"
    svc = Service(name="stubborn", description="ignores SIGTERM",
                  programs=lambda c: [Program("stubborn", ["sh", "-c", script], stop_wait=2)],
                  ready=lambda c: None, url=lambda c: "-", ports=lambda c: [])
    def sleepers() -> list[psutil.Process]:
        return [p for p in psutil.process_iter(["cmdline"])
                if p.info["cmdline"] and p.info["cmdline"][:2] in (["sleep", "500"], ["sleep", "400"])]

    launcher.up(ctx, registry={"stubborn": svc})
    # `up` returns once the shell runs; its two children may not exist yet, and a child
    # forked after `down` looked would be a test race, not a leftover.
    deadline = time.monotonic() + 30
    while len(sleepers()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(sleepers()) == 2, "the stubborn service never started its two children"
    launcher.down(ctx, registry={"stubborn": svc})
    assert sleepers() == []


def test_a_running_service_whose_settings_changed_restarts_when_another_is_started(
        ctx: Context) -> None:
    port = _free_port()
    web = _listening(port)
    registry = {"web": web}
    launcher.up(ctx, registry=registry)
    before = Supervisor(ctx).all_info()["web"].pid

    # Same service, new environment: supervisord sees a changed program.
    changed = Service(**{**web.__dict__, "programs": lambda c: [
        Program("web", [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                env={"SKIFF_TEST_GENERATION": "2"})]})
    other = Service(name="other", description="another service",
                    programs=lambda c: [Program("other", ["sh", "-c", "exec sleep 600"])],
                    ready=lambda c: None, url=lambda c: "-", ports=lambda c: [], start_timeout=10)
    launcher.up(ctx, ["other"], registry={"web": changed, "other": other})

    info = Supervisor(ctx).all_info()
    assert info["web"].state == "RUNNING", "the changed program was left stopped"
    assert info["web"].pid != before, "the changed program kept its old process"
    launcher.down(ctx, registry={"web": changed, "other": other})
