"""One program in the foreground: how a container runs a service and knows its health.

A Compose service is one program of a native service (``skiff-run kafka``,
``skiff-run airflow-scheduler``): the same ``prepare`` and the same command line,
environment, folder and user that supervisord gets natively. ``skiff-run`` starts
the program as its child, passes it the signals the container gets, and exits with
its status. Meanwhile it asks the program's ``health`` (else, for a service's first
program, the service's ``ready``) and writes the answer to ``HEALTH_FILE``, which the
container's health check reads: a file read costs nothing, where a probe in a new
Python process every few seconds in each of twenty containers would cost a core.

Only the one service's module is imported (``skiff.services.load``), not the CLI.
"""

from __future__ import annotations

import argparse
import os
import pwd
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from skiff.native.context import Context
from skiff.native.spec import NotReady, Program, Service
from skiff.services import load

HEALTH_FILE = Path(os.environ.get("SKIFF_HEALTH_FILE", "/run/skiff/health"))
# Seconds between checks until the program is first ready, and afterwards.
STARTING_EVERY = 2.0
HEALTHY_EVERY = 15.0


def find(ctx: Context, name: str) -> tuple[Service, Program]:
    """The service and program called ``name``; a service's name means its first program."""
    svc = load(name)
    programs = svc.programs(ctx)
    for prog in programs:
        if prog.name == name:
            return svc, prog
    if svc.name == name and programs:
        return svc, programs[0]
    raise KeyError(f"{svc.name} has no program {name!r} "
                   f"(its programs: {', '.join(p.name for p in programs)})")


def probe(ctx: Context, name: str) -> None:
    """Raise NotReady unless ``name`` does its job (see the module's docstring)."""
    svc, prog = find(ctx, name)
    if prog.health is not None:
        prog.health(ctx)
    elif prog.name == svc.programs(ctx)[0].name:
        svc.ready(ctx)


def write_health(line: str, path: Path = HEALTH_FILE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # One partial file per thread: the watcher and the main thread may write at once.
    partial = path.with_name(f"{path.name}.{threading.get_ident()}.part")
    partial.write_text(line + "\n")
    partial.replace(path)


def _watch(ctx: Context, name: str, stop: threading.Event) -> None:
    ever_ready = False
    while not stop.is_set():
        try:
            probe(ctx, name)
        except NotReady as exc:
            line = f"{'unhealthy' if ever_ready else 'starting'}: {exc}"
        except Exception as exc:  # a probe's bug must not end the watch
            line = f"unhealthy: probe failed: {type(exc).__name__}: {exc}"
        else:
            ever_ready = True
            line = "ready"
        # Once the program has exited, its last word stays.
        if not stop.is_set():
            try:
                write_health(line)
            except OSError as exc:
                print(f"skiff-run: cannot write {HEALTH_FILE}: {exc}", file=sys.stderr)
        stop.wait(HEALTHY_EVERY if ever_ready else STARTING_EVERY)


def run(ctx: Context, name: str) -> int:
    """Prepare the service, run its program until it exits; returns its exit status."""
    svc, prog = find(ctx, name)
    write_health("starting: preparing")
    # Once per service: its first program's container prepares (Airflow's migration runs
    # once, not in each of six containers); the others start after it is healthy.
    if svc.prepare is not None and prog.name == svc.programs(ctx)[0].name:
        svc.prepare(ctx)
    # Programs may be defined in terms of what prepare wrote: ask again.
    prog = next(p for p in svc.programs(ctx) if p.name == prog.name)
    user = pwd.getpwnam(prog.user) if prog.user and os.geteuid() == 0 else None
    env = {**os.environ, **prog.env}
    if user is not None:
        env.update(HOME=user.pw_dir, USER=user.pw_name, LOGNAME=user.pw_name)
    child = subprocess.Popen(prog.command, cwd=prog.directory, env=env,
                             user=user.pw_uid if user else None,
                             group=user.pw_gid if user else None,
                             extra_groups=[] if user else None)

    def forward(signum: int, _frame: object) -> None:
        child.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, forward)
    stop = threading.Event()
    watcher = threading.Thread(target=_watch, args=(ctx, prog.name, stop), daemon=True)
    watcher.start()
    code = child.wait()
    stop.set()
    write_health(f"unhealthy: {prog.name} exited with {code}")
    # A program killed by a signal exits as a shell reports it.
    return 128 - code if code < 0 else code


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="skiff-run",
        description="Run one program of a Skiff service in the foreground (a container's "
                    "command), or probe it once with --probe.")
    parser.add_argument("name", help="a program (airflow-scheduler) or a service (its first "
                                     "program)")
    parser.add_argument("--probe", action="store_true",
                        help="check once whether it does its job; exit 0 if so")
    args = parser.parse_args(argv)
    ctx = Context.discover()
    started = time.monotonic()
    try:
        if args.probe:
            probe(ctx, args.name)
            print(f"{args.name}: ready ({time.monotonic() - started:.1f}s)")
            return
        sys.exit(run(ctx, args.name))
    except NotReady as exc:
        print(f"{args.name}: not ready: {exc}", file=sys.stderr)
    except (KeyError, RuntimeError, OSError) as exc:
        print(f"error: {args.name}: {exc}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
    main()
