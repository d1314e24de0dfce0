"""Cold and warm start of the whole native stack, and its memory once healthy.

Baseline: the cold start (empty state: initdb, Kafka format, Cassandra's first
boot, MLflow and Airflow migrations). The warm start reuses that state. Memory
is summed per service over each program's process tree: RSS counts shared pages
once per process, PSS shares them out, so PSS adds up to the real total.

Runs in a state folder of its own, so it needs the developer's stack stopped
(`skiff down`): the ports are the same.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import psutil

from skiff.native import launcher
from skiff.native.context import Context
from skiff.native.supervisor import Supervisor
from skiff.services import REGISTRY
from skiff.services import postgres as pg

MIB = 1024 * 1024


def _timed_up(ctx: Context) -> float:
    t0 = time.monotonic()
    rows = launcher.up(ctx)
    elapsed = time.monotonic() - t0
    unhealthy = [r.service for r in rows if r.health != "healthy"]
    assert not unhealthy, f"unhealthy after up: {unhealthy}"
    return elapsed


def memory_by_service(ctx: Context) -> dict[str, tuple[float, float]]:
    """(RSS MiB, PSS MiB) of each service's process trees."""
    infos = Supervisor(ctx).all_info()
    out = {}
    for svc in REGISTRY.values():
        rss = pss = 0
        for prog in svc.programs(ctx):
            pid = infos[prog.name].pid
            root = psutil.Process(pid)
            for proc in [root, *root.children(recursive=True)]:
                try:
                    mem = proc.memory_full_info()
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                rss += mem.rss
                pss += getattr(mem, "pss", mem.rss)
        out[svc.name] = (rss / MIB, pss / MIB)
    return out


def main() -> None:
    base = Context.discover()
    state = Path(tempfile.mkdtemp(prefix="skiff-bench-"))
    ctx = Context(root=base.root, cache=base.cache, state=state)
    print(f"stack_footprint: state in {state}, {psutil.cpu_count()} cores, "
          f"{psutil.virtual_memory().total / 2**30:.0f} GiB")
    try:
        cold = _timed_up(ctx)
        time.sleep(5)  # let start-up allocations settle before measuring memory
        memory = memory_by_service(ctx)
        launcher.down(ctx)
        warm = _timed_up(ctx)
    finally:
        launcher.down(ctx)
        shutil.rmtree(pg.data_dir(ctx), ignore_errors=True)
        shutil.rmtree(state, ignore_errors=True)
    print(f"{'service':<10} {'RSS MiB':>9} {'PSS MiB':>9}")
    for name, (rss, pss) in memory.items():
        print(f"{name:<10} {rss:9.0f} {pss:9.0f}")
    total_rss = sum(r for r, _ in memory.values())
    total_pss = sum(p for _, p in memory.values())
    print(f"{'total':<10} {total_rss:9.0f} {total_pss:9.0f}")
    print(f"cold start (baseline): {cold:6.1f} s")
    print(f"warm start:            {warm:6.1f} s  ({warm / cold:.2f}x the cold start)")


if __name__ == "__main__":
    main()
