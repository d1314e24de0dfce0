"""Native ``up``, ``down`` and ``status``: services started in order, each awaited.

``up`` is all or nothing: when a service cannot start, what this call started is
stopped again and the error names the service, the cause and its log's last lines.
"""

from __future__ import annotations

import functools
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import psutil

from skiff.native.context import Context
from skiff.native.spec import NotReady, Program, Service
from skiff.native.supervisor import Supervisor, log_path
from skiff.services import REGISTRY, in_start_order

FAILED_STATES = {"FATAL", "EXITED", "BACKOFF", "STOPPED", "UNKNOWN"}


class ServiceError(RuntimeError):
    """One service failed; ``str()`` is the one-line message, ``log_tail`` the evidence."""

    def __init__(self, service: str, cause: str, log_tail: str = "") -> None:
        super().__init__(f"{service}: {cause}")
        self.service = service
        self.log_tail = log_tail


@dataclass(frozen=True)
class Row:
    service: str
    state: str
    health: str
    url: str
    detail: str = ""


def all_programs(ctx: Context, registry: dict[str, Service]) -> list[Program]:
    return [prog for svc in registry.values() for prog in svc.programs(ctx)]


def tail(ctx: Context, program: str, lines: int = 20) -> str:
    path = log_path(ctx, program)
    if not path.exists():
        return f"(no log at {path})"
    with path.open("rb") as fh:
        fh.seek(0, 2)
        fh.seek(max(0, fh.tell() - 64 * 1024))
        text = fh.read().decode(errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def port_owner(host: str, port: int) -> str | None:
    """Who listens on ``port`` already, or None when it is free."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        if sock.connect_ex((host, port)) != 0:
            return None
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
                proc = psutil.Process(conn.pid)
                return f"{proc.name()} (pid {conn.pid})"
    except (psutil.AccessDenied, psutil.NoSuchProcess):
        pass
    return "another program"


def probe(ctx: Context, svc: Service) -> str | None:
    """None when the service answers, else why not."""
    try:
        svc.ready(ctx)
    except NotReady as exc:
        return str(exc) or "not ready"
    except Exception as exc:  # a probe must never crash status
        return f"{type(exc).__name__}: {exc}"
    return None


def _running(sup: Supervisor, svc: Service, ctx: Context) -> bool:
    infos = sup.all_info()
    return all(infos.get(p.name) and infos[p.name].state == "RUNNING" for p in svc.programs(ctx))


def wait_ready(ctx: Context, sup: Supervisor, svc: Service,
               on_wait: Callable[[str], None] = lambda _: None) -> None:
    """Poll the service's probe until it answers, its process dies, or time runs out."""
    deadline = time.monotonic() + svc.start_timeout
    reason = "not probed yet"
    while time.monotonic() < deadline:
        for prog in svc.programs(ctx):
            state = sup.info(prog.name).state
            if state in FAILED_STATES:
                raise ServiceError(svc.name, f"process {prog.name} is {state} while starting",
                                   tail(ctx, prog.name))
        why = probe(ctx, svc)
        if why is None:
            return
        reason = why
        on_wait(reason)
        time.sleep(0.5)
    first = svc.programs(ctx)[0].name
    raise ServiceError(svc.name, f"not ready after {svc.start_timeout:.0f}s: {reason}",
                       tail(ctx, first))


def _waiting(on_step: Callable[[str, str], None], service: str, why: str) -> None:
    on_step(service, f"waiting: {why}")


def up(ctx: Context, names: list[str] | None = None,
       on_step: Callable[[str, str], None] = lambda s, m: None,
       registry: dict[str, Service] = REGISTRY) -> list[Row]:
    services = in_start_order(names, registry)
    sup = Supervisor(ctx)
    already = {s.name for s in services if _running(sup, s, ctx)} if sup.is_running() else set()
    host = ctx.settings.bind_host
    for svc in services:
        if svc.name in already:
            continue
        for port in svc.ports(ctx):
            owner = port_owner(host, port)
            if owner:
                raise ServiceError(svc.name, f"port {port} on {host} is already in use by {owner}; "
                                   "stop it or set another port in .env")
    for svc in services:
        if svc.install:
            svc.install(ctx)
    sup.ensure_started(all_programs(ctx, registry))
    started: list[Service] = []

    def start_one(svc: Service) -> None:
        if svc.prepare:
            on_step(svc.name, "preparing")
            svc.prepare(ctx)
        on_step(svc.name, "starting")
        for prog in svc.programs(ctx):
            sup.start(prog.name)
        started.append(svc)
        t0 = time.monotonic()
        wait_ready(ctx, sup, svc, functools.partial(_waiting, on_step, svc.name))
        if svc.bootstrap:
            on_step(svc.name, "bootstrapping")
            svc.bootstrap(ctx)
        on_step(svc.name, f"ready in {time.monotonic() - t0:.1f}s")

    # Each service starts as soon as what it depends on is ready, not before, and
    # independent services start together: the JVMs' warm-up overlaps.
    ready = {svc.name: threading.Event() for svc in services}
    failed = threading.Event()
    errors: list[BaseException] = []

    def run(svc: Service) -> None:
        for dep in svc.depends_on:
            while not ready[dep].wait(0.2):
                if failed.is_set():
                    return
        if failed.is_set():
            return
        try:
            start_one(svc)
        except BaseException as exc:
            errors.append(exc)
            failed.set()
        else:
            ready[svc.name].set()

    for svc in services:
        if svc.name in already:
            on_step(svc.name, "already running")
            ready[svc.name].set()
    try:
        todo = [svc for svc in services if svc.name not in already]
        with ThreadPoolExecutor(max_workers=max(1, len(todo))) as pool:
            for svc in todo:
                pool.submit(run, svc)
        if errors:
            raise errors[0]
    except BaseException:
        for svc in reversed(started):
            stop_service(ctx, sup, svc)
        raise
    return status(ctx, registry)


def stop_service(ctx: Context, sup: Supervisor, svc: Service) -> None:
    for prog in reversed(svc.programs(ctx)):
        sup.stop(prog.name)


def down(ctx: Context, names: list[str] | None = None,
         on_step: Callable[[str, str], None] = lambda s, m: None,
         registry: dict[str, Service] = REGISTRY) -> None:
    sup = Supervisor(ctx)
    if not sup.is_running():
        return
    targets = list(registry.values())
    if names:
        in_start_order(names, registry)  # unknown names fail here
        # Stopping a service stops whatever depends on it, directly or not, first.
        stopping = set(names)
        for svc in targets:  # registry order puts dependencies first
            if stopping & set(svc.depends_on):
                stopping.add(svc.name)
        targets = [s for s in targets if s.name in stopping]
    for svc in reversed(targets):
        on_step(svc.name, "stopping")
        stop_service(ctx, sup, svc)
    if not names:
        sup.shutdown()


def status(ctx: Context, registry: dict[str, Service] = REGISTRY) -> list[Row]:
    sup = Supervisor(ctx)
    infos = sup.all_info()
    rows = []
    for svc in registry.values():
        states = [infos[p.name].state if p.name in infos else "STOPPED" for p in svc.programs(ctx)]
        state = "RUNNING" if all(s == "RUNNING" for s in states) else (
            "STOPPED" if all(s == "STOPPED" for s in states) else ",".join(sorted(set(states))))
        if state == "STOPPED":
            rows.append(Row(svc.name, "stopped", "-", svc.url(ctx)))
            continue
        why = probe(ctx, svc)
        rows.append(Row(svc.name, state.lower(), "healthy" if why is None else "unhealthy",
                        svc.url(ctx), why or ""))
    return rows
