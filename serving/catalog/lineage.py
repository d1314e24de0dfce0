"""OpenLineage RunEvents (spec 2-0-2) -> runs, asset versions and what they were made from.

The event's ``run.facets.skiff_run`` says which Airflow task and step ran, for
whom, with which parameters; each input/output dataset's ``facets.skiff_asset``
names the catalog asset (else the dataset becomes ``dataset/<namespace+name>``).
A COMPLETE event turns every output into a new version of its asset whose inputs
are the input versions; other event types record the run's state. Every event
is kept verbatim (``run_events``). The same run, output and version twice is
recorded once.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from serving.catalog import specs
from serving.catalog.assets import find_asset
from serving.catalog.auth import Caller
from serving.catalog.db import Asset, Run, RunEvent, Version
from serving.catalog.errors import ApiError
from serving.catalog.workflows import by_dag

ENDED = ("COMPLETE", "FAIL", "ABORT")
UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class Job(specs.Open):
    namespace: Annotated[str, Field(min_length=1)]
    name: Annotated[str, Field(min_length=1)]


class RunRef(specs.Open):
    runId: uuid.UUID
    facets: dict[str, Any] = Field(default_factory=dict)


class Dataset(specs.Open):
    namespace: Annotated[str, Field(min_length=1)]
    name: Annotated[str, Field(min_length=1)]
    facets: dict[str, Any] = Field(default_factory=dict)


class Event(specs.Open):
    eventType: Literal["START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"] = "OTHER"
    eventTime: datetime
    run: RunRef
    job: Job
    inputs: list[Dataset] = Field(default_factory=list)
    outputs: list[Dataset] = Field(default_factory=list)
    producer: str | None = None

    @field_validator("eventTime")
    @classmethod
    def aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("eventTime needs a timezone (ISO 8601 with Z or an offset)")
        return value


class SkiffRun(specs.Open):
    dag_id: str | None = None
    dag_run_id: str | None = None
    task_id: str | None = None
    step: str | None = None
    step_version: str | int | None = None
    user: str | None = None
    parameters: dict[str, Any] | None = None
    mlflow_run_id: str | None = None
    notebook: str | None = None
    workflow: Annotated[str, Field(pattern=r"^workflow/[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")] | None = None


class SkiffAsset(specs.Open):
    kind: specs.Kind
    name: specs.Name
    version: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")] | int | None = None
    location: str | None = None
    format: str | None = None
    size_bytes: Annotated[int, Field(ge=0)] | None = None
    digest: str | None = None


def ingest(session: Session, caller: Caller, body: Any) -> dict[str, Any]:
    event = specs.parse(Event, body)
    facet = specs.parse(SkiffRun, event.run.facets.get("skiff_run") or {}, "run.facets.skiff_run")
    run_id = str(event.run.runId)
    run = session.get(Run, run_id, with_for_update=True)
    if run is None:
        run = Run(run_id=run_id, parameters={}, state=event.eventType)
        session.add(run)
    update_run(run, event, facet)
    session.add(RunEvent(run_id=run_id, event_type=event.eventType, event_time=event.eventTime,
                         body=body, received_from=caller.user))
    session.flush()
    recorded: list[str] = []
    if event.eventType == "COMPLETE":
        owner = owner_of(session, run, caller)
        inputs = [input_version(session, d, i, owner, event) for i, d in enumerate(event.inputs)]
        for i, dataset in enumerate(event.outputs):
            recorded.append(output_version(session, dataset, i, owner, run, inputs, event).ref)
    return {"run": run_json(session, run), "recorded": recorded}


def update_run(run: Run, event: Event, facet: SkiffRun) -> None:
    run.job_namespace, run.job = event.job.namespace, event.job.name
    for key in ("dag_id", "dag_run_id", "task_id", "step", "user", "mlflow_run_id", "notebook",
                "workflow"):
        value = getattr(facet, key)
        if value is not None:
            setattr(run, key, value)
    if facet.step_version is not None:
        run.step_version = str(facet.step_version)
    if facet.parameters is not None:
        run.parameters = facet.parameters
    if run.dag_id is None and "." in event.job.name:
        run.dag_id, _, task = event.job.name.partition(".")
        run.task_id = run.task_id or task
    # Events may arrive out of order: an ended run stays ended.
    if run.state not in ENDED or event.eventType in ENDED:
        run.state = event.eventType
    if event.eventType == "START":
        run.started_at = run.started_at or event.eventTime
    if event.eventType in ENDED:
        run.ended_at = event.eventTime


def workflow_of(session: Session, run: Run) -> Asset | None:
    if run.workflow:
        found = find_asset(session, "workflow", run.workflow.split("/", 1)[1])
        if found is not None:
            return found
    if run.dag_id:
        found = by_dag(session, run.dag_id)
        if found is not None:
            run.workflow = run.workflow or found.ref
            return found
    return None


def owner_of(session: Session, run: Run, caller: Caller) -> tuple[str, str | None, str]:
    """Owner, team and access of assets a run creates: its workflow's, else the run user's."""
    workflow = workflow_of(session, run)
    if workflow is not None:
        return workflow.owner, workflow.team, workflow.access
    return run.user or caller.user, None, "private"


def asset_facet(dataset: Dataset, field: str) -> SkiffAsset:
    facet = dataset.facets.get("skiff_asset")
    if facet is not None:
        return specs.parse(SkiffAsset, facet, f"{field}.facets.skiff_asset")
    name = UNSAFE.sub("-", f"{dataset.namespace}.{dataset.name}").strip("-._")[:128]
    if not name:
        raise ApiError(422, "invalid", f"{field}: no usable name in {dataset.namespace!r}/"
                       f"{dataset.name!r}", field=field)
    location = f"{dataset.namespace.rstrip('/')}/{dataset.name.lstrip('/')}"
    return SkiffAsset(kind="dataset", name=name, location=location)


def ensure_asset(session: Session, facet: SkiffAsset, owner: tuple[str, str | None, str]) -> Asset:
    asset = find_asset(session, facet.kind, facet.name, lock=True)
    if asset is None:
        who, team, level = owner
        asset = Asset(kind=facet.kind, name=facet.name, owner=who, team=team, access=level,
                      description="", spec={}, location=facet.location, format=facet.format,
                      size_bytes=facet.size_bytes, digest=facet.digest)
        session.add(asset)
        session.flush()
    return asset


def next_version(asset: Asset) -> str:
    numbers = [int(v.version) for v in asset.versions if v.version.isdigit()]
    return str(max(numbers, default=0) + 1)


def find_version(asset: Asset, version: str) -> Version | None:
    return next((v for v in asset.versions if v.version == version), None)


def new_version(session: Session, asset: Asset, version: str, facet: SkiffAsset,
                run: Run | None, event: Event) -> Version:
    made = Version(asset=asset, version=version, location=facet.location, format=facet.format,
                   size_bytes=facet.size_bytes, digest=facet.digest, run=run,
                   created_at=event.eventTime, created_by=(run.user if run else None))
    session.add(made)
    # The asset shows its newest version's coordinates.
    for key in ("location", "format", "size_bytes", "digest"):
        value = getattr(facet, key)
        if value is not None:
            setattr(asset, key, value)
    session.flush()
    return made


def input_version(session: Session, dataset: Dataset, index: int,
                  owner: tuple[str, str | None, str], event: Event) -> Version:
    """The version read: the one named, else the latest (a raw version if there is none yet,
    or if the data's digest changed since)."""
    facet = asset_facet(dataset, f"inputs.{index}")
    asset = ensure_asset(session, facet, owner)
    if facet.version is not None:
        found = find_version(asset, str(facet.version))
        return found or new_version(session, asset, str(facet.version), facet, None, event)
    latest = asset.versions[-1] if asset.versions else None
    if latest is not None and (facet.digest is None or facet.digest == latest.digest):
        return latest
    return new_version(session, asset, next_version(asset), facet, None, event)


def output_version(session: Session, dataset: Dataset, index: int,
                   owner: tuple[str, str | None, str], run: Run, inputs: list[Version],
                   event: Event) -> Version:
    facet = asset_facet(dataset, f"outputs.{index}")
    asset = ensure_asset(session, facet, owner)
    if facet.version is not None:
        version = str(facet.version)
        found = find_version(asset, version)
        if found is not None:
            if found.run_id == run.run_id:
                return found
            raise ApiError(409, "version_exists", f"{asset.ref}@{version} was recorded by run "
                           f"{found.run_id}, not {run.run_id}", asset=f"{asset.ref}@{version}")
    else:
        again = next((v for v in asset.versions if v.run_id == run.run_id), None)
        if again is not None:
            return again
        version = next_version(asset)
    made = new_version(session, asset, version, facet, run, event)
    made.inputs = [v for v in inputs if v.id != made.id]
    session.flush()
    return made


def run_fields(run: Run) -> dict[str, Any]:
    return {"run_id": run.run_id, "job": run.job, "dag_id": run.dag_id,
            "dag_run_id": run.dag_run_id, "task_id": run.task_id, "step": run.step,
            "step_version": run.step_version, "user": run.user, "parameters": run.parameters,
            "mlflow_run_id": run.mlflow_run_id, "notebook": run.notebook,
            "workflow": run.workflow, "state": run.state}


def run_json(session: Session, run: Run) -> dict[str, Any]:
    outputs = list(session.scalars(select(Version).where(Version.run_id == run.run_id)
                                   .order_by(Version.id)))
    inputs: list[str] = []
    for out in outputs:
        for v in out.inputs:
            if v.ref not in inputs:
                inputs.append(v.ref)
    return {**run_fields(run), "job_namespace": run.job_namespace,
            "started_at": run.started_at.isoformat() if run.started_at else None,
            "ended_at": run.ended_at.isoformat() if run.ended_at else None,
            "inputs": inputs, "outputs": [v.ref for v in outputs]}
