"""HTTP load from vegeta (github.com/tsenart/vegeta), built from the Go module proxy.

Why vegeta and not a Python client: on a 2-core machine a Python loop is the
bottleneck well before a server is (ADR 0013). vegeta keeps connections alive,
runs a closed loop (``rate=0`` with a fixed number of workers: each sends its next
request when the previous answer arrived) or an open loop at a constant rate
(requests leave on schedule whether or not earlier ones were answered, so a slow
server cannot hide its queueing), and reports latency percentiles and status codes.
"""

from __future__ import annotations

import base64
import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from skiff.native import installing, system
from skiff.native.context import Context

PACKAGE = "github.com/tsenart/vegeta/v12"
VERSION = "v12.13.0"


def binary(ctx: Context) -> Path:
    """The vegeta binary in skiff's cache, built on first use (go install, a minute or two)."""
    return installing.go_binary("vegeta", PACKAGE, VERSION, ctx.component("vegeta", VERSION), "vegeta",
                                go=lambda: system.go_bin(ctx))


@dataclass(frozen=True)
class Target:
    url: str
    body: bytes
    headers: dict[str, str]

    def to_json(self) -> str:
        return json.dumps({"method": "POST", "url": self.url, "body": base64.b64encode(self.body).decode(),
                           "header": {k: [v] for k, v in self.headers.items()}})


@dataclass(frozen=True)
class Result:
    requests: int
    ok: int                 # 2xx answers
    throughput: float       # 2xx answers per second
    p50_ms: float
    p99_ms: float
    max_ms: float
    status_codes: dict[str, int]
    errors: list[str]
    bodies: list[bytes]     # the answers' bodies, when asked for


def attack(vegeta: Path, target: Target, *, seconds: float, concurrency: int | None = None,
           rate: int | None = None, insecure: bool = False, bodies: bool = False) -> Result:
    """Closed loop with ``concurrency`` connections, or open loop at ``rate`` requests/s."""
    if (concurrency is None) == (rate is None):
        raise ValueError("give either concurrency (closed loop) or rate (open loop)")
    with tempfile.TemporaryDirectory(prefix="skiff-vegeta-") as tmp:
        targets = Path(tmp) / "targets.json"
        targets.write_text(target.to_json() + "\n")
        results = Path(tmp) / "results.bin"
        if concurrency is not None:
            load = ["-rate=0", f"-workers={concurrency}", f"-max-workers={concurrency}"]
        else:
            # Enough workers that a slow answer never delays the next send.
            load = [f"-rate={rate}/s", "-workers=32"]
        cmd = [str(vegeta), "attack", "-format=json", f"-targets={targets}", f"-duration={seconds}s",
               "-keepalive=true", "-http2=false", "-timeout=30s", f"-output={results}", *load]
        if insecure:
            cmd.append("-insecure")  # Traefik's self-signed local certificate
        subprocess.run(cmd, check=True, capture_output=True, timeout=seconds + 60)
        report = subprocess.run([str(vegeta), "report", "-type=json", str(results)], check=True,
                                capture_output=True, text=True, timeout=60)
        answers: list[bytes] = []
        if bodies:
            encoded = subprocess.run([str(vegeta), "encode", "-to=json", str(results)], check=True,
                                     capture_output=True, text=True, timeout=120)
            answers = [base64.b64decode(json.loads(line).get("body") or "")
                       for line in encoded.stdout.splitlines() if line.strip()]
    doc = json.loads(report.stdout)
    lat = doc["latencies"]
    codes = {str(k): int(v) for k, v in (doc.get("status_codes") or {}).items()}
    ok = sum(n for code, n in codes.items() if code.startswith("2"))
    return Result(requests=int(doc["requests"]), ok=ok, throughput=float(doc["throughput"]),
                  p50_ms=lat["50th"] / 1e6, p99_ms=lat["99th"] / 1e6, max_ms=lat["max"] / 1e6,
                  status_codes=codes, errors=list(doc.get("errors") or [])[:5], bodies=answers)
