"""`python -m benchmarks [NAME...]`: run the benchmarks (all by default)."""

from __future__ import annotations

import sys

from benchmarks import capture_throughput, stack_footprint

BENCHMARKS = {"stack_footprint": stack_footprint.main,
              "capture_throughput": capture_throughput.main}

if __name__ == "__main__":
    names = sys.argv[1:] or list(BENCHMARKS)
    for name in names:
        BENCHMARKS[name]()
