"""The monitored window: which captured predictions of one model a monitoring run looks at.

``skiff.prediction_events`` is partitioned by model x UTC day (compose/cassandra/schema.cql),
with ``event_time`` as the first clustering column, so a window is read as one range
query per day it touches, never as a scan of the table. The window is half-open,
``[start, end)``: consecutive hourly windows never count a request twice.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from skiff.bracelet.features import NAMES, FeatureSchema

DEFAULT_HOURS = 24


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime

    def days(self) -> list[str]:
        """The ``day`` partition keys (UTC dates) that hold rows of the window."""
        first = self.start.astimezone(UTC).date()
        # end is excluded: a window ending at midnight does not touch the next day.
        last = (self.end.astimezone(UTC) - timedelta(microseconds=1)).date()
        return [(first + timedelta(days=d)).isoformat() for d in range((last - first).days + 1)]

    def as_json(self) -> dict[str, str]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat()}


def parse_time(value: str, name: str) -> datetime:
    """An ISO 8601 timestamp; one without a zone is UTC (the platform's clocks and partitions are)."""
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{name} must be an ISO 8601 timestamp such as 2026-01-31T12:00:00Z, "
                         f"got {value!r}") from None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def resolve(start: str | None, end: str | None, now: datetime,
            hours: float = DEFAULT_HOURS) -> Window:
    """The window from the run's params: empty ``end`` is ``now``, empty ``start`` is ``hours`` before end."""
    # A plain datetime, not Airflow's pendulum DateTime: pendulum drops the zone when a
    # timedelta is subtracted from one in datetime.UTC, and the comparison below then fails.
    end_at = parse_time(end, "window_end") if end else datetime.fromtimestamp(now.timestamp(), UTC)
    start_at = parse_time(start, "window_start") if start else end_at - timedelta(hours=hours)
    if start_at >= end_at:
        raise ValueError(f"window_start ({start_at.isoformat()}) must be before "
                         f"window_end ({end_at.isoformat()})")
    return Window(start_at, end_at)


@dataclass
class Captured:
    """The window's captured requests: encoded feature rows, and the labelled ones' outcomes."""

    rows: list[dict[str, float | None]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    # Probability of class 1 for each labelled row, in the order of ``labels``.
    probabilities: list[float] = field(default_factory=list)
    # Rows whose features fail the feature schema: counted, never compared.
    rejected: int = 0


def collect(rows: Iterable[Any], schema: FeatureSchema | None = None) -> Captured:
    """Sort rows of prediction_events (``features``, ``probability``, ``label``) into a :class:`Captured`."""
    schema = schema or FeatureSchema()
    out = Captured()
    for row in rows:
        try:
            clean, errors = schema.validate(json.loads(row.features or "null"))
        except ValueError:
            errors = {"$": "features are not JSON"}
        if errors:
            out.rejected += 1
            continue
        out.rows.append({n: clean.get(n) for n in NAMES})
        # The model server captures the probability of class 1 whatever it predicted
        # (serving/model_server/session.py), which is what ROC AUC needs.
        if row.label in (0, 1) and row.probability is not None:
            out.labels.append(int(row.label))
            out.probabilities.append(float(row.probability))
    return out


def _query_rows(session: Any, model_name: str, window: Window) -> Iterator[Any]:
    statement = session.prepare(
        "SELECT features, probability, label FROM prediction_events"
        " WHERE model_name = ? AND day = ? AND event_time >= ? AND event_time < ?")
    for day in window.days():
        bound = statement.bind((model_name, day, window.start, window.end))
        bound.fetch_size = 1000
        yield from session.execute(bound)


def read_window(model_name: str, window: Window) -> Captured:
    """The captured requests of ``model_name`` served within ``window``.

    As the task's Cassandra role (CASSANDRA_HOST/PORT/USERNAME/PASSWORD: the reader).
    """
    from skiff import cassandra_access

    cluster = cassandra_access.from_env(timeout=60, consistency=None)
    try:
        session = cluster.connect("skiff")
        return collect(_query_rows(session, model_name, window))
    finally:
        cluster.shutdown()
