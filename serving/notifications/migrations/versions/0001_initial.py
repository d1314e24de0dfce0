"""The first schema: runs and their events.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # One row per run: its owner and workflow (who may see it, fixed by its first
    # event), when it was active, its last status, its newest event's seq (the order
    # of the run list).
    op.execute("""
        CREATE TABLE runs (
            run         text PRIMARY KEY,
            owner       text NOT NULL,
            workflow    text NOT NULL DEFAULT '',
            first_time  timestamptz NOT NULL,
            last_time   timestamptz NOT NULL,
            last_status text,
            last_seq    bigint NOT NULL,
            events      bigint NOT NULL DEFAULT 0
        )""")
    op.execute("CREATE INDEX runs_last_seq ON runs (last_seq DESC)")
    op.execute("CREATE INDEX runs_owner ON runs (owner)")
    # Every event as sent (body), keyed by its id (producers' retries and Kafka
    # redeliveries are stored once); seq orders them and is the streams' resume point.
    op.execute("""
        CREATE TABLE events (
            seq      bigserial PRIMARY KEY,
            id       text NOT NULL UNIQUE,
            run      text NOT NULL REFERENCES runs (run) ON DELETE CASCADE,
            kind     text NOT NULL,
            time     timestamptz NOT NULL,
            body     jsonb NOT NULL,
            received timestamptz NOT NULL DEFAULT now()
        )""")
    op.execute("CREATE INDEX events_run_seq ON events (run, seq)")


def downgrade() -> None:
    op.execute("DROP TABLE events")
    op.execute("DROP TABLE runs")
