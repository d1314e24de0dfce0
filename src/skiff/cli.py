"""The ``skiff`` command: set up, start, watch and stop the platform."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from urllib.parse import quote

import click
import httpx
from rich.console import Console
from rich.table import Table

from skiff import __version__, compose, tls
from skiff.bracelet.features import SITES
from skiff.catalog.cli import catalog, history
from skiff.devices import devices
from skiff.envfile import write_env
from skiff.native import foreground, launcher, system
from skiff.native.context import Context
from skiff.native.installing import InstallError
from skiff.native.launcher import ServiceError
from skiff.native.spec import NotReady
from skiff.native.supervisor import log_path
from skiff.scoring.command import score
from skiff.services import REGISTRY, in_start_order
from skiff.users import users

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
    _ensure_certs(ctx)


def _ensure_certs(ctx: Context, announce: bool = True) -> tls.TlsFiles:
    """The certificate Traefik serves: generated once in certs/, or the one .env names."""
    try:
        files = tls.ensure(ctx.root, ctx.settings)
    except RuntimeError as exc:  # TlsError, or settings missing from .env
        _fail(str(exc))
        raise
    if files.generated and announce:
        _step("init", files.summary())
    return files


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
    """Write .env with fresh secrets (existing ones kept) and the TLS certificate in certs/."""
    ctx = _ctx()
    path, generated = write_env(ctx.root)
    out.print(f"wrote {path}: {len(generated)} new secret(s)" +
              (f" ({', '.join(generated)})" if generated else ", existing ones kept"))
    out.print(_ensure_certs(ctx, announce=False).summary())


@main.command()
@click.argument("services", nargs=-1)
@click.option("--for-tests", is_flag=True,
              help="Also what the test suite needs (Chromium and its driver for the browser tests).")
@click.option("--no-packages", is_flag=True,
              help="Do not install Debian packages (each service still checks what it needs).")
@click.option("--no-deps", is_flag=True,
              help="Only the services named, not what they depend on (an image's build).")
def install(services: tuple[str, ...], for_tests: bool, no_packages: bool, no_deps: bool) -> None:
    """Install the components into the cache, and the Debian packages they need (as root).

    Idempotent. Not root and packages missing: prints the one apt-get command to run
    and stops. The first run takes about 20 minutes (Go builds, Maven Central, PyPI).
    """
    ctx = _ctx()
    t0 = time.monotonic()
    try:
        todo = [REGISTRY[n] for n in services] if no_deps else in_start_order(list(services))
        if not no_packages:
            versions = ctx.versions.model_dump()
            wanted = [pkg.format(**versions) for svc in todo for pkg in svc.packages]
            system.ensure_packages([*wanted, *(system.TEST_PACKAGES if for_tests else ())])
        for i, svc in enumerate(todo, 1):
            if svc.install:
                _step(svc.name, f"checking install ({i}/{len(todo)})")
                svc.install(ctx)
    except (InstallError, RuntimeError, KeyError) as exc:
        _fail(str(exc))
    out.print(f"installed in {time.monotonic() - t0:.0f}s into {ctx.cache}")


@main.command(name="run")
@click.argument("program")
def run_program(program: str) -> None:
    """Run one program in the foreground, as its container does (prepare, then exec).

    PROGRAM is a program (`airflow-scheduler`) or a service (its first program).
    """
    ctx = _ctx()
    try:
        code = foreground.run(ctx, program)
    except (KeyError, RuntimeError, OSError) as exc:
        _fail(f"{program}: {exc}")
    sys.exit(code)


@main.command()
@click.argument("name")
def probe(name: str) -> None:
    """Exit 0 if the service or program NAME does its job, else 1 and why (a health check)."""
    ctx = _ctx()
    try:
        foreground.probe(ctx, name)
    except NotReady as exc:
        _fail(f"{name}: not ready: {exc}")
    except KeyError as exc:
        _fail(str(exc))
    out.print(f"{name}: ready")


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
@click.option("--publish", is_flag=True,
              help=f"Compose: also publish every service on 127.0.0.1 ({compose.PORTS_FILE}).")
def up(services: tuple[str, ...], native: bool, use_compose: bool, publish: bool) -> None:
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
        sys.exit(compose.up(ctx, list(services), publish=publish))
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
    if not services:
        _print_front_door(ctx)


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


@main.command()
@click.option("--site", type=click.Choice(sorted(SITES)), default="hungary", show_default=True,
              help="Whose patients the devices send.")
@click.option("--rate", type=float, default=50.0, show_default=True, help="Requests per second.")
@click.option("--duration", type=float, default=60.0, show_default=True, help="Seconds to send for.")
@click.option("--labels/--no-labels", default=True, show_default=True,
              help="Send each patient's true label to the feedback endpoint after the answer.")
@click.option("--url", default=None, help="Model server base URL (default: this stack's).")
def simulate(site: str, rate: float, duration: float, labels: bool, url: str | None) -> None:
    """Send real rows of SITE to the prediction API like a fleet of bracelets.

    Each request carries a device token from Keycloak (client credentials of
    DEVICE_CLIENT_ID), as a real bracelet would. Prints sent/ok/error counts and
    latency percentiles; exit 1 if any request failed.
    """
    import asyncio

    from skiff.bracelet import simulate as sim
    from skiff.keycloak import DeviceAuth

    ctx = _ctx()
    base = url or f"http://{ctx.settings.host('model_server')}:{ctx.settings.model_server_port}"
    total = int(rate * duration)
    with err.status(f"simulating {site} at {rate:g}/s for {duration:g}s") as status:
        def tick(r: sim.Report) -> None:
            status.update(f"{site}: sent {r.sent}/{total}, ok {r.ok}, errors {r.errors}")

        report = asyncio.run(sim.run(base, site, rate, duration, send_labels=labels,
                                     auth=DeviceAuth(ctx.settings), on_tick=tick))
    out.print(report.summary())
    for sample in report.error_samples:
        err.print(f"  e.g. {sample}", markup=False)
    if report.errors:
        sys.exit(1)


@main.command()
@click.option("--site", type=click.Choice(sorted(SITES)), default="hungary", show_default=True,
              help="Whose patients the simulated devices send.")
@click.option("--rate", type=float, default=20.0, show_default=True, help="Requests per second.")
@click.option("--duration", type=float, default=15.0, show_default=True, help="Seconds of traffic.")
@click.option("--model-family", default="logistic_regression", show_default=True,
              type=click.Choice(["logistic_regression", "random_forest", "gradient_boosting"]))
def demo(site: str, rate: float, duration: float, model_family: str) -> None:
    """Run the bracelet scenario on the running stack, end to end.

    Train through Airflow, show the run and the promotion, wait until the model
    server serves the champion, simulate devices, and check every answered
    request was captured in Cassandra; end with the new model's history from the
    catalog. `make demo` brings the platform up first.
    """
    import asyncio
    from datetime import UTC, datetime

    from skiff.bracelet import demo as d
    from skiff.bracelet import simulate as sim
    from skiff.keycloak import DeviceAuth

    ctx = _ctx()
    s = ctx.settings
    t_start = time.monotonic()
    try:
        out.rule("1. Train: Airflow runs the training notebook with Papermill")
        api = d.airflow_client(ctx)
        run_id = d.trigger(api, d.TRAINING_DAG, {"model_family": model_family})
        out.print(f"triggered {d.TRAINING_DAG} run {run_id}  (UI: {d.airflow.public_url(ctx)})")
        # The notebook's progress (learning curve, pictures, summary) as it happens.
        out.print(f"follow it live: {s.public_url}/runs/{quote(f'{d.TRAINING_DAG}/{run_id}', safe='/')}",
                  highlight=False, soft_wrap=True)
        t0 = time.monotonic()
        with err.status("waiting for the training run") as status:
            def tick(state: str, tasks: dict[str, str]) -> None:
                shown = ", ".join(f"{k}={v}" for k, v in tasks.items())
                status.update(f"{state} {time.monotonic() - t0:4.0f}s  {shown}")

            state = d.wait_run(api, d.TRAINING_DAG, run_id, on_tick=tick)
        if state != "success":
            _fail(f"training run {run_id} ended {state}",
                  hint="skiff logs airflow-scheduler, or the Airflow UI")
        out.print(f"training run succeeded in {time.monotonic() - t0:.0f}s")

        out.rule("2. Track and promote: MLflow registry")
        outcome = d.xcom(api, d.TRAINING_DAG, run_id, "evaluate_and_promote")
        run = d.mlflow_get(ctx, "runs/get", run_id=outcome["run_id"])["run"]
        metrics = {m["key"]: m["value"] for m in run["data"].get("metrics", [])}
        out.print(f"candidate: {s.model_name} version {outcome['version']} from run {outcome['run_id']}")
        out.print("held-out metrics: " + ", ".join(f"{k} {v:.3f}" for k, v in sorted(metrics.items())))
        shown = {k: v for k, v in outcome.items() if k not in ("model_name", "version", "run_id")}
        out.print("promotion: " + ", ".join(f"{k}={v}" for k, v in shown.items()))
        champ = d.champion(ctx)
        if champ is None:
            _fail(f"no version of {s.model_name} holds @{s.model_alias} after training")
        assert champ is not None
        out.print(f"@{s.model_alias} is version {champ['version']};  MLflow UI: "
                  f"{s.public_url}/mlflow/#/models/{s.model_name}")

        out.rule("3. Serve: the model server follows the champion")
        with err.status(f"waiting for the model server to serve version {champ['version']}"):
            d.wait_served(ctx, champ["version"])
        out.print(f"{d.model_server_url(ctx)} serves {s.model_name} v{champ['version']}")

        out.rule(f"4. Devices: {site} patients at {rate:g}/s for {duration:g}s")
        since = datetime.now(UTC)
        report = asyncio.run(sim.run(d.model_server_url(ctx), site, rate, duration,
                                     auth=DeviceAuth(ctx.settings)))
        out.print(report.summary())

        out.rule("5. Capture: Kafka -> ingest -> Cassandra")
        with err.status("waiting for the captured rows"):
            cap = d.captured(ctx, report.request_ids, s.model_name, since)
        verdict = "[green]all captured[/]" if cap.captured == cap.answered else "[red]rows missing[/]"
        out.print(f"answered {cap.answered}, captured {cap.captured} in Cassandra: {verdict}")

        out.rule("6. History: where the model came from (the catalog)")
        from skiff.catalog import CatalogError, workflows
        from skiff.catalog.cli import describe

        ref = f"model/{s.model_name}@{outcome['version']}"
        try:
            with workflows.service_client(ctx.settings) as catalog:
                chain = catalog.history(ref).get("chain", [])
        except CatalogError as exc:
            _fail(f"the catalog has no history of {ref}: {exc}")
        for entry in chain:
            for line in describe(entry):
                out.print(line, highlight=False, markup=False, soft_wrap=True)
        out.print(f"the same from anywhere: skiff history {ref}")
    except (d.DemoError, d.AirflowError, httpx.HTTPError) as exc:
        _fail(str(exc))
    out.print(f"demo finished in {time.monotonic() - t_start:.0f}s")
    _print_front_door(ctx)
    if report.errors or cap.captured != cap.answered:
        sys.exit(1)


def _print_front_door(ctx: Context) -> None:
    """The one address and a login to use it with (the platform admin from .env)."""
    s = ctx.settings
    cert, _ = s.tls_files(ctx.root)
    out.rule("The platform")
    out.print(f"open [bold]{s.public_url}/[/]  (JupyterLab /jupyter/, Airflow /airflow/, "
              f"MLflow /mlflow/, model API /model/)")
    out.print(f"sign in as [bold]{s.platform_admin_user}[/], password "
              f"[bold]{s.platform_admin_password.get_secret_value()}[/] (PLATFORM_ADMIN_PASSWORD in .env); "
              f"add people with `skiff users add NAME --team T --role R`")
    if not s.tls_cert_file:
        out.print(f"the certificate is signed by this platform's own CA: trust {cert.parent / 'ca.crt'} "
                  f"in your browser, or accept the warning once")


# Users, roles and teams in Keycloak (skiff/users.py); devices' own credentials (skiff/devices.py).
main.add_command(users)
main.add_command(devices)
# Batch scoring on Spark (skiff/scoring/command.py).
main.add_command(score)
# The catalog: projects, assets, access levels, data sources; the history of what runs made.
main.add_command(catalog)
main.add_command(history)


if __name__ == "__main__":
    main()
