"""The catalog's tables (SQLAlchemy ORM). Schema changes go through a new Alembic migration.

An asset is unique by (kind, name). Its versions are what runs produced
(lineage) or what was read as raw input; ``version_inputs`` links a version to
the input versions it was made from, so history is a walk over that graph.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


project_assets = Table(
    "project_assets", Base.metadata,
    Column("project_id", ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True),
    Column("asset_id", ForeignKey("assets.id", ondelete="CASCADE"), primary_key=True),
)

version_inputs = Table(
    "version_inputs", Base.metadata,
    Column("version_id", ForeignKey("versions.id", ondelete="CASCADE"), primary_key=True),
    Column("input_id", ForeignKey("versions.id", ondelete="CASCADE"), primary_key=True),
)


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    owner: Mapped[str] = mapped_column(String(255))
    team: Mapped[str | None] = mapped_column(String(255))
    access: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow,
                                                 onupdate=utcnow)
    assets: Mapped[list[Asset]] = relationship(secondary=project_assets, back_populates="projects",
                                               order_by="(Asset.kind, Asset.name)")


class Asset(Base):
    __tablename__ = "assets"
    __table_args__ = (UniqueConstraint("kind", "name", name="uq_assets_kind_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(128))
    owner: Mapped[str] = mapped_column(String(255))
    team: Mapped[str | None] = mapped_column(String(255))
    access: Mapped[str] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(Text, default="")
    location: Mapped[str | None] = mapped_column(Text)
    format: Mapped[str | None] = mapped_column(String(128))
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    digest: Mapped[str | None] = mapped_column(String(255))
    spec: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    # Fernet token of the data source's secret (JSON); never leaves the server in clear
    # but through the owner-only credentials endpoint of a managed store.
    secret: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow,
                                                 onupdate=utcnow)
    projects: Mapped[list[Project]] = relationship(secondary=project_assets,
                                                   back_populates="assets", order_by="Project.name")
    versions: Mapped[list[Version]] = relationship(back_populates="asset", order_by="Version.id",
                                                   cascade="all, delete-orphan")

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.name}"


class Run(Base):
    __tablename__ = "runs"

    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    job_namespace: Mapped[str | None] = mapped_column(String(255))
    job: Mapped[str | None] = mapped_column(String(512))
    dag_id: Mapped[str | None] = mapped_column(String(255), index=True)
    dag_run_id: Mapped[str | None] = mapped_column(String(255))
    task_id: Mapped[str | None] = mapped_column(String(255))
    step: Mapped[str | None] = mapped_column(String(255))
    step_version: Mapped[str | None] = mapped_column(String(255))
    user: Mapped[str | None] = mapped_column(String(255))
    parameters: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    mlflow_run_id: Mapped[str | None] = mapped_column(String(255))
    notebook: Mapped[str | None] = mapped_column(Text)
    workflow: Mapped[str | None] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow,
                                                 onupdate=utcnow)


class RunEvent(Base):
    """Every accepted OpenLineage event, verbatim: nothing accepted is lost."""

    __tablename__ = "run_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.run_id", ondelete="CASCADE"), index=True)
    event_type: Mapped[str] = mapped_column(String(16))
    event_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    body: Mapped[dict[str, Any]] = mapped_column(JSONB)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    received_from: Mapped[str] = mapped_column(String(255))


class Version(Base):
    __tablename__ = "versions"
    __table_args__ = (UniqueConstraint("asset_id", "version", name="uq_versions_asset_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    asset_id: Mapped[int] = mapped_column(ForeignKey("assets.id", ondelete="CASCADE"), index=True)
    version: Mapped[str] = mapped_column(String(128))
    location: Mapped[str | None] = mapped_column(Text)
    format: Mapped[str | None] = mapped_column(String(128))
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    digest: Mapped[str | None] = mapped_column(String(255))
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.run_id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(255))
    asset: Mapped[Asset] = relationship(back_populates="versions")
    run: Mapped[Run | None] = relationship()
    inputs: Mapped[list[Version]] = relationship(
        secondary=version_inputs, primaryjoin=id == version_inputs.c.version_id,
        secondaryjoin=id == version_inputs.c.input_id, order_by="Version.id")

    @property
    def ref(self) -> str:
        return f"{self.asset.ref}@{self.version}"


class Principal(Base):
    """A user the catalog has seen, and the teams their data sources were provisioned for."""

    __tablename__ = "principals"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    teams: Mapped[list[str]] = mapped_column(JSONB, default=list)
    provisioned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Database:
    """The engine and a session factory; one per app (per gunicorn worker)."""

    def __init__(self, url: str) -> None:
        self.engine: Engine = create_engine(url, pool_pre_ping=True, pool_size=4, max_overflow=4)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed when the block ends, rolled back if it raises."""
        with self.sessions.begin() as session:
            yield session
