"""A fleet of simulated bracelets: real rows of one site sent to the REST API at a rate.

Open-loop load: request i is sent at t0 + i/rate whether or not earlier ones have
answered (devices don't wait for each other), with a cap on requests in flight.
Each ok prediction may be followed by its true label on the feedback endpoint,
as a clinician's diagnosis would arrive later.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from skiff.bracelet.features import encode_row, label, load_raw


@dataclass
class Report:
    site: str
    sent: int = 0
    ok: int = 0
    errors: int = 0
    labels_sent: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    request_ids: list[str] = field(default_factory=list)
    versions: dict[str, int] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]

    def summary(self) -> str:
        rate = self.sent / self.elapsed_s if self.elapsed_s else 0.0
        return (f"site {self.site}: sent {self.sent}, ok {self.ok}, errors {self.errors}, "
                f"labels {self.labels_sent} in {self.elapsed_s:.1f}s ({rate:.1f} req/s); latency ms "
                f"p50 {self.percentile(50):.1f} p90 {self.percentile(90):.1f} "
                f"p99 {self.percentile(99):.1f} max {max(self.latencies_ms, default=float('nan')):.1f}; "
                f"versions {self.versions}")


async def _one(client: httpx.AsyncClient, record: dict, truth: int, report: Report,
               send_labels: bool, limit: asyncio.Semaphore) -> None:
    async with limit:
        report.sent += 1
        t0 = time.perf_counter()
        try:
            resp = await client.post("/v1/predict", json=record)
        except httpx.HTTPError as exc:
            report.errors += 1
            if len(report.error_samples) < 5:
                report.error_samples.append(f"{type(exc).__name__}: {exc}")
            return
        report.latencies_ms.append((time.perf_counter() - t0) * 1000)
        if resp.status_code != 200:
            report.errors += 1
            if len(report.error_samples) < 5:
                report.error_samples.append(f"HTTP {resp.status_code}: {resp.text[:200]}")
            return
        body = resp.json()
        report.ok += 1
        version = body["model"]["version"]
        report.versions[version] = report.versions.get(version, 0) + 1
        report.request_ids.append(body["request_id"])
        if send_labels:
            fb = await client.post("/v1/feedback", json={"request_id": body["request_id"], "label": truth})
            if fb.status_code == 202:
                report.labels_sent += 1


async def run(base_url: str, site: str, rate: float, duration: float, *, send_labels: bool = True,
              max_in_flight: int = 64, seed: int = 0, headers: dict[str, str] | None = None,
              auth: httpx.Auth | None = None,
              on_tick: Callable[[Report], None] = lambda r: None) -> Report:
    """Send ``rate`` requests a second for ``duration`` seconds; ``auth`` signs them
    (the model API wants a device token: ``skiff.keycloak.DeviceAuth``)."""
    rows = load_raw([site])
    rng = random.Random(seed)
    rng.shuffle(rows)
    samples = itertools.cycle([(encode_row(r), label(r)) for r in rows])
    report = Report(site=site)
    limit = asyncio.Semaphore(max_in_flight)
    total = int(rate * duration)
    limits = httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=max_in_flight)
    async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits,
                                 headers=headers, auth=auth) as client:
        t0 = time.perf_counter()
        tasks = []
        for i in range(total):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)  # pacing the open-loop schedule, not waiting on a condition
            record, truth = next(samples)
            tasks.append(asyncio.create_task(_one(client, record, truth, report, send_labels, limit)))
            if i % max(1, int(rate)) == 0:
                on_tick(report)
        await asyncio.gather(*tasks)
        report.elapsed_s = time.perf_counter() - t0
    on_tick(report)
    return report
