"""The catalog's first schema: projects, assets, versions, runs, lineage events.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _stamps() -> list[sa.Column]:
    return [sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False)]


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("team", sa.String(255)),
        sa.Column("access", sa.String(16), nullable=False),
        *_stamps(),
    )
    op.create_table(
        "assets",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("team", sa.String(255)),
        sa.Column("access", sa.String(16), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("location", sa.Text),
        sa.Column("format", sa.String(128)),
        sa.Column("size_bytes", sa.BigInteger),
        sa.Column("digest", sa.String(255)),
        sa.Column("spec", JSONB, nullable=False),
        sa.Column("secret", sa.Text),
        *_stamps(),
        sa.UniqueConstraint("kind", "name", name="uq_assets_kind_name"),
    )
    # Workflows are looked up by the Airflow DAG they register.
    op.create_index("ix_assets_workflow_dag", "assets", [sa.text("(spec->>'dag_id')")],
                    postgresql_where=sa.text("kind = 'workflow'"))
    op.create_table(
        "project_assets",
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("asset_id", sa.Integer, sa.ForeignKey("assets.id", ondelete="CASCADE"),
                  primary_key=True),
    )
    op.create_table(
        "runs",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("job_namespace", sa.String(255)),
        sa.Column("job", sa.String(512)),
        sa.Column("dag_id", sa.String(255), index=True),
        sa.Column("dag_run_id", sa.String(255)),
        sa.Column("task_id", sa.String(255)),
        sa.Column("step", sa.String(255)),
        sa.Column("step_version", sa.String(255)),
        sa.Column("user", sa.String(255)),
        sa.Column("parameters", JSONB, nullable=False),
        sa.Column("mlflow_run_id", sa.String(255)),
        sa.Column("notebook", sa.Text),
        sa.Column("workflow", sa.String(200)),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "run_events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.run_id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("event_type", sa.String(16), nullable=False),
        sa.Column("event_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("body", JSONB, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_from", sa.String(255), nullable=False),
    )
    op.create_table(
        "versions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("asset_id", sa.Integer, sa.ForeignKey("assets.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("version", sa.String(128), nullable=False),
        sa.Column("location", sa.Text),
        sa.Column("format", sa.String(128)),
        sa.Column("size_bytes", sa.BigInteger),
        sa.Column("digest", sa.String(255)),
        sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.run_id", ondelete="SET NULL")),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(255)),
        sa.UniqueConstraint("asset_id", "version", name="uq_versions_asset_version"),
    )
    op.create_table(
        "version_inputs",
        sa.Column("version_id", sa.Integer, sa.ForeignKey("versions.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("input_id", sa.Integer, sa.ForeignKey("versions.id", ondelete="CASCADE"),
                  primary_key=True),
    )
    op.create_table(
        "principals",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("teams", JSONB, nullable=False),
        sa.Column("provisioned_at", sa.DateTime(timezone=True)),
    )


def downgrade() -> None:
    for table in ("principals", "version_inputs", "versions", "run_events", "runs", "project_assets",
                  "assets", "projects"):
        op.drop_table(table)
