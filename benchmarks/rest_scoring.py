"""REST scoring: our model server (capture on) against ``mlflow models serve``, same model.

``python -m benchmarks rest_scoring [--repeat 3] [--seconds 10] [--rate-seconds 20] [--no-traefik]``

Ours is the running stack's ``model-server`` (gunicorn, Keycloak bearer tokens,
every prediction spooled and published to Kafka, then written to Cassandra by
``ingest``), asked directly on its port and, once, through Traefik. The baseline
is started here: ``mlflow models serve --env-manager local`` in the serving-test
venv (~/.cache/skiff/venvs/serving-test: mlflow-skinny, scikit-learn, uvicorn; the
project builds it for its tests), with as many worker processes as ours, and no
authentication or capture (both favour it).

Same model: the version ``MODEL_NAME@MODEL_ALIAS`` points to. mlflow's ONNX pyfunc
cannot answer a DataFrame request for a classifier with a label and a probability
output ("All arrays must be of the same length"), so when the version's run also
logged the fitted scikit-learn pipeline (the training notebook logs it as
``sklearn``) the baseline serves that: the same fitted model, as an mlflow user
would serve it. A version with a tensor signature (tests/serving/register_model.py)
is served as it is. Both answers are compared on a few records first.

Load comes from vegeta (benchmarks/loadgen.py, ADR 0013): closed loops of 1, 16 and
64 keep-alive connections (requests/s, p50, p99), 1,000-row batches (rows/s), and
an open loop at a constant 200 requests/s (p99 with capture on). Before each
measurement the capture pipeline is let drain (spool empty, ingest caught up), so
no phase pays for the previous one's backlog. Each figure is the median of
``--repeat`` runs. Prints, never asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from benchmarks import loadgen
from benchmarks.capture_throughput import capture_settled
from benchmarks.loadgen import Result, Target
from skiff.bracelet.features import TRAINING_SITE, load_encoded
from skiff.keycloak import device_token
from skiff.native import installing
from skiff.native.context import Context
from skiff.services import mlflow, model_server

CONCURRENCY = (1, 16, 64)
BATCH_ROWS = 1000
BATCH_CONCURRENCY = 4
RATE = 200
TARGET_RATIO, TARGET_P99_MS = 5.0, 10.0


def options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks rest_scoring")
    parser.add_argument("--repeat", type=int, default=3, help="runs; medians are printed (default 3)")
    parser.add_argument("--seconds", type=float, default=10, help="length of each closed-loop run")
    parser.add_argument("--rate-seconds", type=float, default=20, help="length of the 200 req/s run")
    parser.add_argument("--no-traefik", action="store_true", help="skip the run through Traefik")
    return parser.parse_known_args(sys.argv[1:])[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def records() -> list[dict[str, float]]:
    """Complete records of the training site, as a bracelet sends them."""
    encoded, _ = load_encoded([TRAINING_SITE])
    return [{k: float(v) for k, v in r.items() if v is not None}  # type: ignore[misc]
            for r in encoded if all(v is not None for v in r.values())]


def baseline_model(ctx: Context, name: str, version: str) -> str:
    """The model URI mlflow serves: the run's scikit-learn flavour if it logged one."""
    api = f"{mlflow.tracking_uri(ctx)}/api/2.0/mlflow"
    mv = httpx.get(f"{api}/model-versions/get", params={"name": name, "version": version},
                   timeout=30).raise_for_status().json()["model_version"]
    run = httpx.get(f"{api}/runs/get", params={"run_id": mv["run_id"]},
                    timeout=30).raise_for_status().json()["run"]
    found = httpx.post(f"{api}/logged-models/search", timeout=30, json={
        "experiment_ids": [run["info"]["experiment_id"]],
        "filter": f"source_run_id = '{mv['run_id']}'", "max_results": 50})
    if found.status_code == 200:
        for model in found.json().get("models", []):
            info = model.get("info", {})
            if info.get("name") == "sklearn":
                return f"models:/{info['model_id']}"
    return f"models:/{name}/{version}"


@dataclass
class MlflowServe:
    """``mlflow models serve`` in its own process group, stopped as a whole."""

    venv: Path
    model_uri: str
    tracking_uri: str
    workers: int
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, log: Path) -> None:
        env = {**os.environ, "MLFLOW_TRACKING_URI": self.tracking_uri, "MLFLOW_DISABLE_TELEMETRY": "true",
               # mlflow execs `uvicorn` by name: it must find the venv's.
               "PATH": f"{self.venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [str(self.venv / "bin" / "mlflow"), "models", "serve", "-m", self.model_uri,
                 "--env-manager", "local", "-h", "127.0.0.1", "-p", str(self.port),
                 "-w", str(self.workers)],
                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow models serve exited ({self.proc.returncode}); see {log}")
            try:
                if httpx.get(f"{self.url}/ping", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"mlflow models serve did not answer /ping in 180 s; see {log}")

    def pids(self) -> list[int]:
        if self.proc is None:
            return []
        try:
            parent = psutil.Process(self.proc.pid)
            return [parent.pid, *(c.pid for c in parent.children(recursive=True))]
        except psutil.NoSuchProcess:
            return []

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def our_pids() -> list[int]:
    return [p.pid for p in psutil.process_iter(["cmdline"])
            if any("serving.model_server.app:create_app" in a for a in (p.info["cmdline"] or []))]


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


@dataclass
class Server:
    label: str
    target: Callable[[bytes], Target]   # body -> target (fresh token each time)
    single: bytes
    batch: bytes
    pids: Callable[[], list[int]]
    insecure: bool = False


def run_one(vegeta: Path, server: Server, body: bytes, seconds: float, *, concurrency: int | None = None,
            rate: int | None = None) -> tuple[Result, float]:
    """One attack; returns its result and the server's CPU milliseconds per answered request."""
    pids = server.pids()
    before = cpu_seconds(pids)
    result = loadgen.attack(vegeta, server.target(body), seconds=seconds, concurrency=concurrency,
                            rate=rate, insecure=server.insecure)
    cpu_ms = 1000 * (cpu_seconds(pids) - before) / max(result.ok, 1)
    if result.ok < result.requests:
        print(f"    ! {server.label}: {result.requests - result.ok} of {result.requests} failed: "
              f"{result.status_codes} {result.errors}")
    return result, cpu_ms


def main() -> None:
    opts = options()
    ctx = Context.discover()
    ours_url = model_server.url(ctx)
    try:
        ready = httpx.get(f"{ours_url}/readyz", timeout=10)
    except httpx.HTTPError as exc:
        print(f"rest_scoring: skipped, needs the running stack (`skiff up`): {ours_url}: {exc}")
        return
    if ready.status_code != 200:
        print(f"rest_scoring: skipped, the model server has no model yet: {ready.text}")
        return
    name, version = ready.json()["model"]["name"], ready.json()["model"]["version"]
    vegeta = loadgen.binary(ctx)
    venv = installing.venv("serving-test", ctx.venv("serving-test"),
                           ctx.root / "docker/serving/requirements-test.txt")
    uri = baseline_model(ctx, name, version)
    base = MlflowServe(venv, uri, mlflow.tracking_uri(ctx), workers=model_server.WORKERS)
    log = ctx.log_dir / "bench-mlflow-serve.log"
    print(f"rest_scoring: {name} version {version}; ours {ours_url} ({model_server.WORKERS} workers x "
          f"{model_server.THREADS} threads, capture on); mlflow models serve -m {uri} "
          f"({base.workers} workers, {venv}); vegeta {loadgen.VERSION}; "
          f"{opts.repeat} runs of {opts.seconds:.0f} s, medians; load average now "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    base.start(log)
    try:
        measure(ctx, opts, vegeta, base, name, version)
    finally:
        base.stop()


def measure(ctx: Context, opts: argparse.Namespace, vegeta: Path, base: MlflowServe, name: str,
            version: str) -> None:
    s = ctx.settings
    rows = records()
    one = rows[0]
    batch_rows = [rows[i % len(rows)] for i in range(BATCH_ROWS)]

    def bearer() -> dict[str, str]:
        return {"Content-Type": "application/json", "Authorization": f"Bearer {device_token(s)}"}

    ours = Server("ours", lambda body: Target(f"{model_server.url(ctx)}/v1/predict", body, bearer()),
                  json.dumps(one).encode(), json.dumps({"records": batch_rows}).encode(), our_pids)
    theirs = Server("mlflow", lambda body: Target(f"{base.url}/invocations", body,
                                                  {"Content-Type": "application/json"}),
                    json.dumps({"dataframe_records": [one]}).encode(),
                    json.dumps({"dataframe_records": batch_rows}).encode(), base.pids)
    traefik = Server("ours via Traefik",
                     lambda body: Target(f"{s.public_url}/model/v1/predict", body, bearer()),
                     ours.single, ours.batch, our_pids, insecure=True)
    agree(ours, theirs, rows[:20])
    for server in (ours, theirs):  # warm-up: connections, JIT-free but caches and pools
        loadgen.attack(vegeta, server.target(server.single), seconds=2, concurrency=16)

    figures: dict[tuple[str, str], list[tuple[Result, float]]] = {}

    def record(key: tuple[str, str], server: Server, body: bytes, seconds: float, **load: Any) -> None:
        capture_settled(ctx)
        figures.setdefault(key, []).append(run_one(vegeta, server, body, seconds, **load))

    for run in range(opts.repeat):
        print(f"  run {run + 1}/{opts.repeat} ...", flush=True)
        for c in CONCURRENCY:
            for server in (ours, theirs):
                record((server.label, f"c{c}"), server, server.single, opts.seconds, concurrency=c)
        for server in (ours, theirs):
            record((server.label, "batch"), server, server.batch, opts.seconds,
                   concurrency=BATCH_CONCURRENCY)
            record((server.label, "rate"), server, server.single, opts.rate_seconds, rate=RATE)
        if not opts.no_traefik:
            record((traefik.label, "c16"), traefik, traefik.single, opts.seconds, concurrency=16)
    report(figures, opts)


def agree(ours: Server, theirs: Server, sample: list[dict[str, float]]) -> None:
    """Both servers give the same labels for the same records (else the comparison is void)."""
    a = httpx.post(ours.target(b"").url, json={"records": sample}, headers=ours.target(b"").headers,
                   timeout=30).raise_for_status().json()
    b = httpx.post(theirs.target(b"").url, json={"dataframe_records": sample},
                   timeout=30).raise_for_status().json()
    mine = [p["prediction"] for p in a["predictions"]]
    preds = b["predictions"]
    other = preds["label"] if isinstance(preds, dict) else [
        p if not isinstance(p, dict) else next(iter(p.values())) for p in preds]
    same = sum(int(x) == int(y) for x, y in zip(mine, other, strict=True))
    print(f"  same labels on {same} of {len(sample)} records")


def med(values: list[float]) -> float:
    return statistics.median(values)


def report(figures: dict[tuple[str, str], list[tuple[Result, float]]], opts: argparse.Namespace) -> None:
    def get(label: str, key: str, pick: Callable[[Result, float], float]) -> float | None:
        runs = figures.get((label, key))
        return med([pick(r, c) for r, c in runs]) if runs else None

    def fmt(x: float | None, spec: str) -> str:
        return "-" if x is None else format(x, spec)

    print(f"rest_scoring: medians of {opts.repeat} runs (requests/s of 2xx answers; latency ms; "
          "server CPU ms per answered request)")
    print(f"  {'':24}{'ours req/s':>11}{'p50':>7}{'p99':>8}{'cpu':>6}   {'mlflow req/s':>12}{'p50':>7}"
          f"{'p99':>8}{'cpu':>6}   {'ratio':>6}")
    rows = [(f"concurrency {c}", f"c{c}") for c in CONCURRENCY]
    for title, key in rows:
        o = get("ours", key, lambda r, c: r.throughput)
        m = get("mlflow", key, lambda r, c: r.throughput)
        print(f"  {title:24}{fmt(o, '11.0f')}{fmt(get('ours', key, lambda r, c: r.p50_ms), '7.1f')}"
              f"{fmt(get('ours', key, lambda r, c: r.p99_ms), '8.1f')}"
              f"{fmt(get('ours', key, lambda r, c: c), '6.2f')}   {fmt(m, '12.0f')}"
              f"{fmt(get('mlflow', key, lambda r, c: r.p50_ms), '7.1f')}"
              f"{fmt(get('mlflow', key, lambda r, c: r.p99_ms), '8.1f')}"
              f"{fmt(get('mlflow', key, lambda r, c: c), '6.2f')}   "
              f"{fmt(o / m if o and m else None, '5.1f')}x")
    o = get("ours", "batch", lambda r, c: r.throughput * BATCH_ROWS)
    m = get("mlflow", "batch", lambda r, c: r.throughput * BATCH_ROWS)
    print(f"  {f'{BATCH_ROWS}-row batches, c{BATCH_CONCURRENCY}':24}{fmt(o, '11.0f')} rows/s"
          f"{'':14}{fmt(m, '12.0f')} rows/s{'':15}{fmt(o / m if o and m else None, '5.1f')}x")
    for label in ("ours", "mlflow"):
        runs = figures.get((label, "rate"), [])
        if runs:
            print(f"  {label + f' at {RATE} req/s (open loop)':28} p50 "
                  f"{fmt(get(label, 'rate', lambda r, c: r.p50_ms), '.1f')}  p99 "
                  f"{fmt(get(label, 'rate', lambda r, c: r.p99_ms), '.1f')}  max "
                  f"{fmt(get(label, 'rate', lambda r, c: r.max_ms), '.1f')} ms, "
                  f"{fmt(get(label, 'rate', lambda r, c: r.throughput), '.0f')} answered/s")
    t = get("ours via Traefik", "c16", lambda r, c: r.throughput)
    if t is not None:
        print(f"  ours via Traefik, c16:      {t:.0f} req/s, p50 "
              f"{fmt(get('ours via Traefik', 'c16', lambda r, c: r.p50_ms), '.1f')} p99 "
              f"{fmt(get('ours via Traefik', 'c16', lambda r, c: r.p99_ms), '.1f')} ms")
    o16, m16 = get("ours", "c16", lambda r, c: r.throughput), get("mlflow", "c16", lambda r, c: r.throughput)
    p99 = get("ours", "rate", lambda r, c: r.p99_ms)
    if o16 and m16 and p99 is not None:
        print(f"  targets: >= {TARGET_RATIO:.0f}x mlflow at c16: {o16 / m16:.1f}x "
              f"({'met' if o16 / m16 >= TARGET_RATIO else 'NOT met'}); p99 < {TARGET_P99_MS:.0f} ms at "
              f"{RATE} req/s with capture on: {p99:.1f} ms ({'met' if p99 < TARGET_P99_MS else 'NOT met'})")


if __name__ == "__main__":
    main()
