"""`python -m benchmarks [NAME...]`: run the benchmarks (all by default)."""

from __future__ import annotations

import sys

from benchmarks import (
    batch_scoring,
    capture_throughput,
    event_delivery,
    orchestration,
    rest_scoring,
    stack_footprint,
)

BENCHMARKS = {"stack_footprint": stack_footprint.main,
              "capture_throughput": capture_throughput.main,
              "rest_scoring": rest_scoring.main,
              "orchestration": orchestration.main,
              "batch_scoring": batch_scoring.main,
              "event_delivery": event_delivery.main}

if __name__ == "__main__":
    # Names pick benchmarks; everything else (--repeat 3, --seconds 10...) is passed on:
    # each benchmark reads its own options from sys.argv and ignores the others'.
    names = [a for a in sys.argv[1:] if a in BENCHMARKS]
    options = [a for a in sys.argv[1:] if a not in BENCHMARKS]
    unknown = [a for a in options if not a.startswith("-") and not a.replace(".", "").isdigit()]
    if unknown:
        sys.exit(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(BENCHMARKS)}")
    for name in names or list(BENCHMARKS):
        sys.argv = [f"benchmarks {name}", *options]
        BENCHMARKS[name]()
