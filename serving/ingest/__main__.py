"""``python -m serving.ingest``: run the streaming ingest until SIGTERM or SIGINT.

Kafka and Cassandra addresses come from skiff's settings (``.env``); the native
``ingest`` service passes ``--ready-file`` and ``--metrics-address`` (Prometheus' /metrics).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from serving.ingest import metrics
from serving.ingest.config import GROUP, endpoints
from serving.ingest.consumer import BATCH_SIZE, IngestConsumer


class OncePerWindow(logging.Filter):
    """Lets each message template of the named loggers through once per ``window`` seconds."""

    def __init__(self, prefixes: tuple[str, ...], window: float = 60.0) -> None:
        super().__init__()
        self.prefixes = prefixes
        self.window = window
        self.seen: dict[tuple[str, int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.prefixes):
            return True
        key = (record.name, record.levelno, str(record.msg))
        last, suppressed = self.seen.get(key, (float("-inf"), 0))
        if record.created - last < self.window:
            self.seen[key] = (last, suppressed + 1)
            return False
        self.seen[key] = (record.created, 0)
        if suppressed:
            record.msg = f"{record.msg} ({suppressed} like it in the last {self.window:.0f}s not shown)"
        return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving.ingest", description=__doc__)
    parser.add_argument("--ready-file", type=Path, help="written once the consumer has its partitions")
    parser.add_argument("--group", default=GROUP, help=f"consumer group (default {GROUP})")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="records per poll")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--metrics-address", metavar="HOST:PORT",
                        help="serve Prometheus metrics (lag per partition) at http://HOST:PORT/metrics")
    args = parser.parse_args(argv)
    if args.metrics_address:
        try:  # checked before anything starts, so a typo is an error, not a consumer without metrics
            metrics.parse_address(args.metrics_address)
        except ValueError as exc:
            parser.error(str(exc))
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The clients' own INFO lines (connections, coordinator...) drown the batch lines,
    # and while a broker or node is down they log each reconnect attempt: keep one a minute.
    for noisy in ("kafka", "cassandra"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for handler in logging.getLogger().handlers:
        handler.addFilter(OncePerWindow(("kafka", "cassandra")))

    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logging.getLogger("serving.ingest").info("%s received: finishing", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if args.metrics_address:
        try:
            metrics.serve(args.metrics_address)
        except OSError as exc:  # the port is taken, or the host is not this machine's
            parser.error(f"--metrics-address {args.metrics_address}: {exc}")
    IngestConsumer(endpoints(), group=args.group, batch_size=args.batch_size,
                   ready_file=args.ready_file, stop=stop).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
