"""The events' tables: storing what the consumer reads, answering what the API asks.

Rows are written in one transaction per Kafka batch, idempotent on the event id, and
the transaction ends with ``NOTIFY`` on CHANNEL carrying the newest seq: PostgreSQL
delivers it at commit, to every process LISTENing (hub.py), so a stored event reaches
the live streams of all workers and no stream sees an event before it is stored.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, create_engine, text

CHANNEL = "skiff_events"
KINDS = ("log", "image", "parameters", "file", "html", "status", "alert", "metrics")


class BadEvent(ValueError):
    """A record that is not an event (logged and skipped: it would never become one)."""


@dataclass(frozen=True)
class Run:
    run: str
    owner: str
    workflow: str
    first_time: dt.datetime
    last_time: dt.datetime
    last_status: str | None
    last_seq: int
    events: int

    def as_json(self) -> dict[str, Any]:
        return {"run": self.run, "user": self.owner, "workflow": self.workflow,
                "first_time": self.first_time.isoformat(), "last_time": self.last_time.isoformat(),
                "status": self.last_status, "last_seq": self.last_seq, "events": self.events}


def engine(url: str) -> Engine:
    return create_engine(url, pool_size=5, max_overflow=5, pool_pre_ping=True)


def parse(raw: bytes | str | Mapping[str, Any]) -> dict[str, Any]:
    """One record's event, checked enough to be stored and shown; BadEvent otherwise."""
    try:
        event = dict(raw) if isinstance(raw, Mapping) else json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadEvent(f"not JSON: {exc}") from exc
    if not isinstance(event, dict):
        raise BadEvent("not a JSON object")
    for key in ("id", "run", "user", "kind", "time"):
        if not isinstance(event.get(key), str) or not event[key]:
            raise BadEvent(f"field {key!r} missing or not a non-empty string")
    if event["kind"] not in KINDS:
        raise BadEvent(f"unknown kind {event['kind']!r}")
    try:
        when = dt.datetime.fromisoformat(event["time"])
    except ValueError as exc:
        raise BadEvent(f"time {event['time']!r} is not ISO-8601") from exc
    if when.tzinfo is None:
        raise BadEvent(f"time {event['time']!r} has no time zone")
    for key in ("step", "workflow", "title"):
        event[key] = str(event.get(key) or "")
    if event.get("link") is not None and not isinstance(event["link"], dict):
        raise BadEvent("link is not an object")
    return event


_INSERT_RUN = text("""
    INSERT INTO runs (run, owner, workflow, first_time, last_time, last_status, last_seq, events)
    VALUES (:run, :owner, :workflow, :time, :time, :status, :seq, 1)
    ON CONFLICT (run) DO UPDATE SET
        -- the owner stays the first event's; a workflow is added once, never changed
        workflow = CASE WHEN runs.workflow = '' THEN excluded.workflow ELSE runs.workflow END,
        first_time = least(runs.first_time, excluded.first_time),
        last_time = greatest(runs.last_time, excluded.last_time),
        last_status = coalesce(excluded.last_status, runs.last_status),
        last_seq = greatest(runs.last_seq, excluded.last_seq),
        events = runs.events + 1
""")
# The run row first (the FK: its first event's user owns it), then the event; a
# duplicate id inserts nothing, then _INSERT_RUN counts the new event in.
_CLAIM_RUN = text("""
    INSERT INTO runs (run, owner, workflow, first_time, last_time, last_seq)
    VALUES (:run, :owner, :workflow, :time, :time, 0)
    ON CONFLICT (run) DO NOTHING
""")
_INSERT_EVENT = text("""
    INSERT INTO events (id, run, kind, time, body) VALUES (:id, :run, :kind, :time, CAST(:body AS jsonb))
    ON CONFLICT (id) DO NOTHING RETURNING seq
""")


def store(db: Engine, events: Iterable[Mapping[str, Any]]) -> list[int]:
    """Store parsed events (one transaction); the seqs of those not stored before."""
    stored: list[int] = []
    with db.begin() as conn:
        for event in events:
            conn.execute(_CLAIM_RUN, {"run": event["run"], "owner": event["user"],
                                      "workflow": event["workflow"], "time": event["time"]})
            seq = conn.execute(_INSERT_EVENT, {
                "id": event["id"], "run": event["run"], "kind": event["kind"],
                "time": event["time"], "body": json.dumps(event)}).scalar()
            if seq is None:
                continue
            state = (event.get("data") or {}).get("state") if event["kind"] == "status" else None
            conn.execute(_INSERT_RUN, {"run": event["run"], "owner": event["user"],
                                       "workflow": event["workflow"], "time": event["time"],
                                       "status": str(state) if state else None, "seq": seq})
            stored.append(seq)
        if stored:
            conn.execute(text("SELECT pg_notify(:channel, :payload)"),
                         {"channel": CHANNEL, "payload": str(max(stored))})
    return stored


_RUN_COLUMNS = "run, owner, workflow, first_time, last_time, last_status, last_seq, events"


def run(db: Engine, name: str) -> Run | None:
    with db.connect() as conn:
        row = conn.execute(text(f"SELECT {_RUN_COLUMNS} FROM runs WHERE run = :run"),
                           {"run": name}).first()
    return _run(row) if row else None


def runs(db: Engine, *, owner: str | None, include_workflows: bool, before: int | None,
         limit: int) -> list[Run]:
    """Runs newest first (by their newest event), older than seq ``before``.

    ``owner`` None: every run. Otherwise the owner's runs, plus runs of a workflow when
    ``include_workflows`` (the caller then checks each workflow with the catalog).
    """
    clauses: list[str] = []
    params: dict[str, Any] = {"limit": limit}
    if before is not None:
        clauses.append("last_seq < :before")
        params["before"] = before
    if owner is not None:
        clauses.append("(owner = :owner" + (" OR workflow <> '')" if include_workflows else ")"))
        params["owner"] = owner
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    with db.connect() as conn:
        rows = conn.execute(text(f"SELECT {_RUN_COLUMNS} FROM runs {where} "
                                 "ORDER BY last_seq DESC LIMIT :limit"), params).all()
    return [_run(row) for row in rows]


def _run(row: Any) -> Run:
    return Run(*tuple(row))


def _event(seq: Any, body: Any) -> dict[str, Any]:
    return {**body, "seq": seq}


def events(db: Engine, run_name: str, *, kinds: Sequence[str] = (), after: int = 0,
           limit: int = 100) -> list[dict[str, Any]]:
    """A run's events in seq order after ``after``, optionally of some kinds only."""
    sql = "SELECT seq, body FROM events WHERE run = :run AND seq > :after"
    params: dict[str, Any] = {"run": run_name, "after": after, "limit": limit}
    if kinds:
        sql += " AND kind = ANY(:kinds)"
        params["kinds"] = list(kinds)
    with db.connect() as conn:
        rows = conn.execute(text(sql + " ORDER BY seq LIMIT :limit"), params).all()
    return [_event(seq, body) for seq, body in rows]


def since(db: Engine, after: int, limit: int = 1000) -> list[tuple[dict[str, Any], str, str]]:
    """Every event after seq ``after`` with its run's owner and workflow (for the hub)."""
    with db.connect() as conn:
        rows = conn.execute(text("""
            SELECT e.seq, e.body, r.owner, r.workflow FROM events e JOIN runs r USING (run)
            WHERE e.seq > :after ORDER BY e.seq LIMIT :limit"""),
                            {"after": after, "limit": limit}).all()
    return [(_event(seq, body), str(owner), str(workflow)) for seq, body, owner, workflow in rows]


def newest_seq(db: Engine) -> int:
    with db.connect() as conn:
        return int(conn.execute(text("SELECT coalesce(max(seq), 0) FROM events")).scalar() or 0)


def event(db: Engine, event_id: str) -> tuple[dict[str, Any], Run] | None:
    with db.connect() as conn:
        row = conn.execute(text(f"""
            SELECT e.seq, e.body, {', '.join('r.' + c.strip() for c in _RUN_COLUMNS.split(','))}
            FROM events e JOIN runs r USING (run) WHERE e.id = :id"""), {"id": event_id}).first()
    if row is None:
        return None
    return _event(row[0], row[1]), _run(row[2:])
