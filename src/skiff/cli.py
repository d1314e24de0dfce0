"""The ``skiff`` command: set up, start, watch and stop the platform."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import click
from rich.console import Console
from rich.table import Table

from skiff import __version__, compose
from skiff.envfile import write_env
from skiff.native import launcher
from skiff.native.context import Context
from skiff.native.installing import InstallError
from skiff.native.launcher import ServiceError
from skiff.native.supervisor import log_path
from skiff.services import REGISTRY, in_start_order

out = Console()
err = Console(stderr=True)


def _ctx() -> Context:
    return Context.discover()


def _fail(message: str, log_tail: str = "", hint: str = "") -> None:
    err.print(f"[bold red]error:[/] {message}")
    if log_tail:
        err.print(log_tail, style="dim", highlight=False, markup=False)
    if hint:
        err.print(hint)
    sys.exit(1)


def _step(service: str, message: str) -> None:
    err.print(f"[cyan]{service:>10}[/] {message}", highlight=False)


class _Progress:
    """Step lines for what happened; one spinner line, rewritten, for what is awaited."""

    def __init__(self) -> None:
        self.status = err.status("")

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.status.stop()

    def __call__(self, service: str, message: str) -> None:
        if message.startswith("waiting"):
            self.status.update(f"[cyan]{service}[/] {message}"[:120])
            self.status.start()
            return
        self.status.stop()
        _step(service, message)


def _print_rows(rows: list[launcher.Row]) -> None:
    table = Table(title="Skiff services")
    for col in ("service", "state", "health", "url", "detail"):
        table.add_column(col)
    colours = {"healthy": "green", "unhealthy": "red"}
    for r in rows:
        colour = colours.get(r.health, "dim")
        table.add_row(r.service, r.state, f"[{colour}]{r.health}[/]", r.url, r.detail[:60])
    out.print(table)


def _ensure_env(ctx: Context) -> None:
    if not (ctx.root / ".env").exists():
        path, _ = write_env(ctx.root)
        _step("init", f"wrote {path} with fresh secrets")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="skiff")
def main() -> None:
    """Skiff: the MLOps platform, with Docker Compose or natively (no Docker).

    \b
    First run:   skiff init && skiff up
    Then:        skiff status | skiff logs SERVICE | skiff down
    """


@main.command()
def init() -> None:
    """Write .env with freshly generated secrets (existing secrets are kept)."""
    path, generated = write_env(_ctx().root)
    out.print(f"wrote {path}: {len(generated)} new secret(s)" +
              (f" ({', '.join(generated)})" if generated else ", existing ones kept"))


@main.command()
@click.argument("services", nargs=-1)
def install(services: tuple[str, ...]) -> None:
    """Install the native components into the cache (idempotent; minutes the first time)."""
    ctx = _ctx()
    _ensure_env(ctx)
    t0 = time.monotonic()
    try:
        for svc in in_start_order(list(services)):
            if svc.install:
                _step(svc.name, "checking install")
                svc.install(ctx)
    except (InstallError, RuntimeError, KeyError) as exc:
        _fail(str(exc))
    out.print(f"installed in {time.monotonic() - t0:.0f}s into {ctx.cache}")


def _mode(native: bool, use_compose: bool) -> str:
    if native and use_compose:
        _fail("--native and --compose exclude each other")
    if native:
        return "native"
    if use_compose:
        return "compose"
    return "compose" if compose.engine_answers() else "native"


@main.command()
@click.argument("services", nargs=-1)
@click.option("--native", is_flag=True, help="Run natively under supervisord, even if Docker answers.")
@click.option("--compose", "use_compose", is_flag=True, help="Run with Docker Compose.")
def up(services: tuple[str, ...], native: bool, use_compose: bool) -> None:
    """Start the platform (or SERVICES and what they need) and wait until healthy.

    Uses Docker Compose when a Docker engine answers, the native mode otherwise.
    """
    ctx = _ctx()
    _ensure_env(ctx)
    mode = _mode(native, use_compose)
    t0 = time.monotonic()
    if mode == "compose":
        if not compose.engine_answers():
            _fail("--compose: no Docker engine answers (`docker info` fails); "
                  "start Docker, or run natively: skiff up --native")
        sys.exit(compose.up(ctx, list(services)))
    try:
        with _Progress() as progress:
            rows = launcher.up(ctx, list(services), on_step=progress)
    except ServiceError as exc:
        _fail(str(exc), exc.log_tail,
              f"full log: skiff logs {exc.service}; nothing this command started is left running")
    except (InstallError, RuntimeError, KeyError) as exc:
        _fail(str(exc))
    _print_rows(rows)
    out.print(f"up in {time.monotonic() - t0:.1f}s (native; state in {ctx.state})")


@main.command()
@click.argument("services", nargs=-1)
def down(services: tuple[str, ...]) -> None:
    """Stop every service (or SERVICES and what depends on them), children included."""
    ctx = _ctx()
    if compose.engine_answers() and compose.is_up(ctx):
        sys.exit(compose.down(ctx))
    launcher.down(ctx, list(services), on_step=_step)
    out.print("stopped")


@main.command()
def status() -> None:
    """Show each service's process state, health and URL; exit 1 unless all are healthy."""
    ctx = _ctx()
    rows = launcher.status(ctx)
    _print_rows(rows)
    if any(r.health != "healthy" for r in rows):
        sys.exit(1)


def _programs_of(ctx: Context, name: str) -> list[str]:
    if name in REGISTRY:
        return [p.name for p in REGISTRY[name].programs(ctx)]
    every = {p.name for svc in REGISTRY.values() for p in svc.programs(ctx)}
    if name in every:
        return [name]
    _fail(f"unknown service {name!r}; known: {', '.join(sorted(set(REGISTRY) | every))}")
    return []


@main.command()
@click.argument("service")
@click.option("-n", "--lines", default=50, show_default=True, help="Lines to show.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
def logs(service: str, lines: int, follow: bool) -> None:
    """Show the log of SERVICE (or of one program, e.g. airflow-scheduler)."""
    ctx = _ctx()
    paths = [str(log_path(ctx, p)) for p in _programs_of(ctx, service)]
    existing = [p for p in paths if shutil.os.path.exists(p)]  # type: ignore[attr-defined]
    if not existing:
        _fail(f"{service}: no log yet (expected {paths[0]}); has it been started? skiff up {service}")
    cmd = ["tail", "-n", str(lines), *(["-F"] if follow else []), *existing]
    sys.exit(subprocess.call(cmd))


@main.command()
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
def reset(yes: bool) -> None:
    """Stop everything and wipe all state: databases, buckets, topics, logs. Keeps .env."""
    ctx = _ctx()
    if not yes:
        click.confirm(f"Delete every service's data in {ctx.state}?", abort=True)
    launcher.down(ctx, on_step=_step)
    from skiff.services import postgres

    for path in (postgres.data_dir(ctx), ctx.state):
        shutil.rmtree(path, ignore_errors=True)
    out.print(f"wiped {ctx.state}")


@main.command()
@click.argument("what", type=click.Choice(["all", *REGISTRY]), default="all")
def bootstrap(what: str) -> None:
    """Create databases, buckets, topics and tables (idempotent; Compose's init jobs run it)."""
    ctx = _ctx()
    targets = list(REGISTRY.values()) if what == "all" else [REGISTRY[what]]
    for svc in targets:
        if svc.bootstrap:
            _step(svc.name, "bootstrapping")
            svc.bootstrap(ctx)
    out.print("bootstrapped")


if __name__ == "__main__":
    main()
