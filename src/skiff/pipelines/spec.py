"""A submitted pipeline as plain data: what the DAG file, the Compose file and the runner share.

The Elyra processor builds a :class:`PipelineSpec` from Elyra's objects; the DAG
and Compose renderers write it out; the runner gets one :class:`NodeSpec` (as
JSON) per task. Nothing here imports Elyra or Airflow.

Resource requests map to Airflow as follows (Airflow has no CPU or memory
accounting of its own; pools and queues are how it shares workers):

- ``pool_slots`` = the most of: 1, the CPU request (rounded up), the RAM request in
  GB divided by :data:`GB_PER_SLOT` (rounded up). A slot of the default pool
  stands for one CPU or 4 GB; a heavy node takes several, so fewer run at once.
- a GPU request (> 0) sends the task to the queue :data:`GPU_QUEUE` ("gpu"), which
  the Celery workers of GPU machines listen on (``airflow-worker-gpu``; natively one
  runs beside the default queue's worker, docs/decisions/0011-airflow-workers.md).
- limits (CPU, RAM) and the GPU vendor have no Airflow counterpart and are ignored.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

GB_PER_SLOT = 4
GPU_QUEUE = "gpu"
# Node kinds the runner knows; Elyra's R nodes have no R on the workers.
NOTEBOOK, PYTHON = "notebook", "python"
KINDS = (NOTEBOOK, PYTHON)
# Elyra's pipeline parameter types -> (JSON schema type of the Airflow Param, Python type).
PARAMETER_TYPES: dict[str, tuple[str, type]] = {
    "String": ("string", str),
    "Integer": ("integer", int),
    "Float": ("number", float),
    "Bool": ("boolean", bool),
}
# Airflow's schedule presets; anything else must look like a cron expression.
SCHEDULE_PRESETS = {"@once", "@continuous", "@hourly", "@daily", "@weekly", "@monthly",
                    "@quarterly", "@yearly", "@annually", "@midnight"}
_CRON_FIELD = re.compile(r"^[0-9A-Za-z*/,?#LW-]+$")


class SpecError(ValueError):
    """The pipeline cannot be turned into a DAG; the message says which node and why."""


def identifier(text: str, what: str = "name") -> str:
    """``text`` as a Python identifier and Airflow task id: letters, digits, underscores."""
    cleaned = re.sub(r"\W+", "_", text.strip(), flags=re.ASCII).strip("_")
    if not cleaned:
        raise SpecError(f"{what} {text!r} has no letter or digit to make a name from")
    return f"n_{cleaned}" if cleaned[0].isdigit() else cleaned


def dag_namespace(owner: str) -> str:
    """What a person's DAG ids begin with (their pipelines are ``<namespace><pipeline>``).

    The catalog lets people register only these DAG ids, and their S3 keys reach only
    these folders of the pipelines and events buckets. SpecError for a name without a
    letter or digit, which has no namespace.
    """
    return f"{identifier(owner, 'user name')}__"


def check_schedule(schedule: str | None) -> str | None:
    """A cron expression or an Airflow preset, or None (runs only when triggered)."""
    if schedule is None or not schedule.strip():
        return None
    value = " ".join(schedule.split())
    if value.startswith("@"):
        if value not in SCHEDULE_PRESETS:
            raise SpecError(f"schedule {value!r}: unknown preset; use one of {sorted(SCHEDULE_PRESETS)} "
                            "or a cron expression such as '0 3 * * *'")
        return value
    fields = value.split(" ")
    if len(fields) not in (5, 6) or not all(_CRON_FIELD.match(f) for f in fields):
        raise SpecError(f"schedule {value!r} is not a cron expression (five fields: minute hour "
                        "day-of-month month day-of-week, e.g. '0 3 * * *')")
    return value


@dataclass(frozen=True)
class Resources:
    cpu: float | None = None
    memory_gb: float | None = None
    gpu: int | None = None

    @property
    def pool_slots(self) -> int:
        slots = 1
        if self.cpu:
            slots = max(slots, math.ceil(self.cpu))
        if self.memory_gb:
            slots = max(slots, math.ceil(self.memory_gb / GB_PER_SLOT))
        return slots

    @property
    def queue(self) -> str | None:
        return GPU_QUEUE if self.gpu else None

    def airflow_args(self) -> dict[str, Any]:
        """Keyword arguments of the Airflow task that carry this request."""
        args: dict[str, Any] = {"pool_slots": self.pool_slots}
        if self.queue:
            args["queue"] = self.queue
        return args


@dataclass(frozen=True)
class Parameter:
    """A pipeline parameter: an Airflow DAG param, a Papermill parameter of the nodes using it."""

    name: str
    type: str = "String"
    default: Any = None
    description: str = ""
    required: bool = False

    def __post_init__(self) -> None:
        if self.type not in PARAMETER_TYPES:
            raise SpecError(f"parameter {self.name!r}: type {self.type!r} is not one of "
                            f"{sorted(PARAMETER_TYPES)}")
        if not self.name.isidentifier():
            raise SpecError(f"parameter {self.name!r} is not a valid Python name")

    @property
    def json_type(self) -> str:
        return PARAMETER_TYPES[self.type][0]

    def coerce(self, value: Any) -> Any:
        """A value as this parameter's type (Elyra and Compose hand some over as strings)."""
        if value is None:
            return None
        python_type = PARAMETER_TYPES[self.type][1]
        if python_type is bool and isinstance(value, str):
            return value.strip().lower() in ("true", "1", "yes")
        try:
            return python_type(value)
        except (TypeError, ValueError):
            raise SpecError(f"parameter {self.name!r}: {value!r} is not a {self.type}") from None


@dataclass(frozen=True)
class NodeSpec:
    """One Elyra node: one Airflow task, one Compose service, one runner call."""

    name: str  # task id: an identifier, unique in the pipeline
    label: str  # as shown in the editor
    kind: str  # notebook | python
    filename: str  # the notebook or script, relative to the node's working folder
    bucket: str
    prefix: str  # the submission's folder in the bucket
    archive: str  # key (under prefix) of the node's files: filename and dependencies
    owner: str
    pipeline: str  # the DAG id
    env: dict[str, str] = field(default_factory=dict)
    parameters: list[str] = field(default_factory=list)  # pipeline parameters it takes
    inputs: list[str] = field(default_factory=list)  # upstream outputs it reads (patterns)
    outputs: list[str] = field(default_factory=list)  # files it writes (patterns)
    upstream: list[str] = field(default_factory=list)  # task ids it runs after
    resources: Resources = field(default_factory=Resources)
    doc: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise SpecError(f"node {self.label!r}: kind {self.kind!r} is not one of {KINDS}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any] | str) -> NodeSpec:
        values = json.loads(data) if isinstance(data, str) else dict(data)
        values["resources"] = Resources(**(values.get("resources") or {}))
        known = set(cls.__dataclass_fields__)
        unknown = set(values) - known
        if unknown:
            raise SpecError(f"node spec has unknown fields {sorted(unknown)}")
        return cls(**values)


@dataclass(frozen=True)
class PipelineSpec:
    dag_id: str
    name: str  # the Elyra pipeline's name (its file's stem)
    source: str  # the pipeline file, for the record
    owner: str
    submission: str  # id of this submission: the files' folder
    submitted_at: str  # ISO 8601, UTC
    bucket: str
    prefix: str
    nodes: list[NodeSpec]
    parameters: list[Parameter] = field(default_factory=list)
    schedule: str | None = None
    description: str = ""
    worker_image: str = ""

    def __post_init__(self) -> None:
        names = [n.name for n in self.nodes]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise SpecError(f"two nodes make the same task id {duplicates}: rename one of them")
        known = set(names)
        for node in self.nodes:
            missing = [u for u in node.upstream if u not in known]
            if missing:
                raise SpecError(f"node {node.label!r} runs after unknown nodes {missing}")
        declared = {p.name for p in self.parameters}
        for node in self.nodes:
            undeclared = [p for p in node.parameters if p not in declared]
            if undeclared:
                raise SpecError(f"node {node.label!r} takes pipeline parameters {undeclared} "
                                "that the pipeline does not define")

    def parameter_values(self) -> dict[str, Any]:
        """Each parameter's value at submission (its default)."""
        return {p.name: p.coerce(p.default) for p in self.parameters}

    def in_order(self) -> list[NodeSpec]:
        """Nodes with every node after those it depends on (stable otherwise)."""
        return dependency_order(self.nodes, key=lambda n: n.name, parents=lambda n: n.upstream,
                                label=lambda n: n.name)


T = TypeVar("T")


def dependency_order(items: Sequence[T], key: Callable[[T], str], parents: Callable[[T], Iterable[str]],
                     label: Callable[[T], str]) -> list[T]:
    """``items`` with each after the ones it depends on (stable otherwise); SpecError on a cycle."""
    by_key = {key(item): item for item in items}
    ordered: list[T] = []
    placed: set[str] = set()

    def visit(item: T, chain: tuple[str, ...]) -> None:
        k = key(item)
        if k in chain:
            names = " -> ".join(label(by_key[c]) for c in (*chain, k))
            raise SpecError(f"the pipeline has a cycle: {names}")
        if k in placed:
            return
        for parent in parents(item):
            visit(by_key[parent], (*chain, k))
        ordered.append(item)
        placed.add(k)

    for item in items:
        visit(item, ())
    return ordered
