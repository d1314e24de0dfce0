"""The ``skiff-airflow`` Elyra runtime: pipelines become DAG files in the folder Airflow reads.

Registered through Elyra's ``elyra.pipeline.processors`` entry point (pyproject.toml);
its runtime schema comes from :mod:`skiff.pipelines.schemas`. Elyra's runtime types
are a closed enum (``RuntimeProcessorType``), so this processor is of the
``APACHE_AIRFLOW`` type under its own name and schema, the way Elyra resolves a
pipeline's processor: runtime configuration -> its schema name -> the processor
of that name. The workspace enables only ``local`` and ``skiff-airflow``
(``ELYRA_PROCESSOR_RUNTIMES``), which also keeps Elyra's own Airflow processor
from answering for the type (pipeline parameters, node properties).

Submitting (``process``): each node's notebook or script and its declared
dependencies go to the S3 store (bucket ``pipelines``, one folder per
submission), then the DAG file (:mod:`skiff.pipelines.dag`) is written, atomically,
to ``<dag folder>/<owner>/<pipeline>.py``; Airflow's DAG processor picks it up.
Exporting writes the same DAG file (``py``) or a Compose file that runs the
pipeline once (``yaml``, :mod:`skiff.pipelines.compose`) where the user asked.

Two properties are ours: pipeline parameters (Elyra leaves their class to each
runtime: typed values, here Airflow DAG params) and the pipeline's schedule (a cron
expression; Elyra 4.1 has no such property, so it is an Elyra-owned node property
of this runtime, shown under the pipeline's "Generic Node Defaults").

Three more, the same way, place the pipeline in the catalog (skiff.pipelines.governance):
its access level (private, team, public), its team, and the catalog assets it uses
(``KIND/NAME``, on the pipeline or on a node). A submission the catalog refuses
(the visibility rule: a team workflow may not use a private asset, a public one
neither a team nor a private asset) fails before anything is uploaded, naming the
asset; an accepted one is registered as ``workflow/<dag id>``.
"""

from __future__ import annotations

import datetime as dt
import getpass
import os
import re
import secrets
import time
from dataclasses import dataclass
from keyword import iskeyword
from pathlib import Path
from typing import Any, ClassVar

from elyra.metadata.schemaspaces import Runtimes
from elyra.pipeline.pipeline import GenericOperation, Operation, Pipeline
from elyra.pipeline.pipeline_constants import ENV_VARIABLES, PIPELINE_PARAMETERS
from elyra.pipeline.processor import RuntimePipelineProcessor, RuntimePipelineProcessorResponse
from elyra.pipeline.properties import (
    ElyraProperty,
    ListItemPropertyAttribute,
    PipelineParameter,
    PropertyInputType,
)
from elyra.pipeline.runtime_type import ApacheAirflowResources, RuntimeProcessorType
from elyra.util.path import get_absolute_path

from skiff.files import write_atomically
from skiff.pipelines import compose, dag, governance, storage
from skiff.pipelines.defaults import SCHEMA_NAME
from skiff.pipelines.spec import (
    NOTEBOOK,
    PARAMETER_TYPES,
    PYTHON,
    NodeSpec,
    Parameter,
    PipelineSpec,
    Resources,
    SpecError,
    check_schedule,
    dag_namespace,
    dependency_order,
    identifier,
)

SCHEDULE = "skiff_schedule"
ACCESS, TEAM, USES = "skiff_access", "skiff_team", "skiff_uses"
PARAMETERS = "SKIFF_AIRFLOW_PIPELINE_PARAMETERS"
CLASSIFIERS = {"execute-notebook-node": NOTEBOOK, "execute-python-node": PYTHON}
# Elyra knows one export format for Airflow (the DAG, "py"); the Compose file is ours.
# The export dialog and `elyra-pipeline export` read the type's list, so it goes there.
COMPOSE_EXPORT = {"id": "yaml", "display_name": "Docker Compose file that runs the pipeline once"}
if COMPOSE_EXPORT["id"] not in [t["id"] for t in ApacheAirflowResources.export_file_types]:
    ApacheAirflowResources.export_file_types = [*ApacheAirflowResources.export_file_types, COMPOSE_EXPORT]

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class PipelineSchedule(ElyraProperty):
    """When Airflow runs the pipeline: a cron expression or preset; empty means when triggered."""

    applies_to_generic = True
    applies_to_custom = False
    property_id = SCHEDULE
    property_display_name = "Schedule (cron)"
    property_description = (
        "When Airflow runs this pipeline: a cron expression such as '0 3 * * *' (03:00 UTC "
        "daily) or a preset such as '@daily'. Empty: only when triggered. It applies to the "
        "whole pipeline: set it in the pipeline's properties, not on a node.")
    _json_data_type = "string"

    def __init__(self, schedule: Any = None, **kwargs: Any) -> None:
        self.schedule = schedule.strip() if isinstance(schedule, str) else None

    @classmethod
    def get_single_instance(cls, value: Any = None) -> ElyraProperty | None:
        if isinstance(value, ElyraProperty):
            return value
        instance = cls(schedule=value)
        return None if instance.should_discard() else instance

    @classmethod
    def get_schema(cls) -> dict[str, Any]:
        schema = super().get_schema()
        schema["uihints"] = {"ui:placeholder": "0 3 * * *"}
        return schema

    def should_discard(self) -> bool:
        return not self.schedule

    def get_value_for_display(self) -> Any:
        return self.schedule

    def get_all_validation_errors(self) -> list[str]:
        try:
            check_schedule(self.schedule)
        except SpecError as exc:
            return [str(exc)]
        return []

    def add_to_execution_object(self, runtime_processor: Any, execution_object: Any, **kwargs: Any) -> None:
        """The schedule is the DAG's, not a task's: nothing to add to a node."""


class _TextValue:
    """A one-line text property of this runtime (a mixin: no property id of its own)."""

    applies_to_generic = True
    applies_to_custom = False
    _json_data_type = "string"
    placeholder = ""

    def __init__(self, value: Any = None, **kwargs: Any) -> None:
        self.value = value.strip() if isinstance(value, str) and value.strip() else None

    @classmethod
    def get_single_instance(cls, value: Any = None) -> Any:
        if isinstance(value, ElyraProperty):
            return value
        instance = cls(value=value)
        return None if instance.should_discard() else instance

    @classmethod
    def get_schema(cls) -> dict[str, Any]:
        schema = super().get_schema()  # type: ignore[misc]
        schema["uihints"] = {"ui:placeholder": cls.placeholder}
        return dict(schema)

    def should_discard(self) -> bool:
        return not self.value

    def get_value_for_display(self) -> Any:
        return self.value

    def get_all_validation_errors(self) -> list[str]:
        return []

    def add_to_execution_object(self, runtime_processor: Any, execution_object: Any, **kwargs: Any) -> None:
        """A property of the pipeline in the catalog: nothing to add to a node."""


class PipelineAccess(_TextValue, ElyraProperty):
    property_id = ACCESS
    property_display_name = "Catalog access (private, team, public)"
    property_description = (
        "Who sees this pipeline's workflow in the catalog: private (you), team (your team), public "
        "(everyone). A team pipeline may not use private assets, a public one neither team nor "
        "private ones. Set it in the pipeline's properties. Default: private.")
    placeholder = "private"

    def get_all_validation_errors(self) -> list[str]:
        if self.value and self.value not in ("private", "team", "public"):
            return [f"catalog access {self.value!r} is not one of private, team, public"]
        return []


class PipelineTeam(_TextValue, ElyraProperty):
    property_id = TEAM
    property_display_name = "Catalog team"
    property_description = ("The team of this pipeline's workflow in the catalog (needed for team and "
                            "public access; default: your only team).")
    placeholder = "team name"


class PipelineUses(_TextValue, ElyraProperty):
    property_id = USES
    property_display_name = "Catalog assets used"
    property_description = ("The catalog assets this pipeline (or node) reads, as KIND/NAME separated by "
                            "commas, e.g. dataset/sales-2025, data_source/team-analytics.")
    placeholder = "dataset/NAME, data_source/NAME"


def _text(value: Any) -> str | None:
    if isinstance(value, _TextValue):
        return value.value
    return value.strip() if isinstance(value, str) and value.strip() else None


def declared(pipeline: Pipeline) -> governance.Declared:
    """The pipeline's catalog access, team and used assets (the pipeline's and its nodes')."""
    props = pipeline.pipeline_properties
    uses = [_text(props.get(USES))]
    uses += [_text(op.elyra_props.get(USES)) for op in pipeline.operations.values()
             if isinstance(op, GenericOperation)]
    return governance.Declared(access=_text(props.get(ACCESS)) or "private", team=_text(props.get(TEAM)),
                               uses=governance.split_uses(u for u in uses if u))


class _ParameterType(PropertyInputType):
    """Elyra's input types for our pipeline parameters: the four Airflow Param types."""

    TYPES: ClassVar[dict[str, dict[str, Any]]] = {
        "String": {"json_type": "string", "default_value": ""},
        "Integer": {"json_type": "integer"},
        "Float": {"json_type": "number"},
        "Bool": {"json_type": "boolean", "default_value": False, "placeholder": " "},
    }

    def __init__(self, base_type: str, **kwargs: Any) -> None:
        super().__init__(base_type=base_type, runtime_defined_types=self.TYPES, **kwargs)


assert set(_ParameterType.TYPES) == set(PARAMETER_TYPES)


class SkiffPipelineParameter(PipelineParameter):
    """A pipeline parameter: an Airflow DAG param, given to the nodes that select it."""

    property_id = PARAMETERS
    property_attributes: ClassVar[list[ListItemPropertyAttribute]] = [
        ListItemPropertyAttribute(
            attribute_id="name", display_name="Parameter Name",
            description="A Python name: the notebook variable Papermill sets and the DAG param's name.",
            allowed_input_types=[PropertyInputType(base_type="str", placeholder="param_1")],
            required=True, use_in_key=True, pattern="^[a-zA-Z][a-zA-Z0-9_]*$"),
        ListItemPropertyAttribute(
            attribute_id="description", display_name="Description",
            description="Shown in Airflow's trigger form.",
            allowed_input_types=[PropertyInputType(base_type="str")], use_in_key=False),
        ListItemPropertyAttribute(
            attribute_id="default_value", display_name="Default Value",
            description="The value runs get unless whoever triggers one gives another.",
            allowed_input_types=[_ParameterType("String", placeholder="value"), _ParameterType("Integer"),
                                 _ParameterType("Float"), _ParameterType("Bool")],
            use_in_key=False),
        ListItemPropertyAttribute(
            attribute_id="value", display_name="Value",
            allowed_input_types=[_ParameterType("String"), _ParameterType("Integer"),
                                 _ParameterType("Float"), _ParameterType("Bool")],
            hidden=True, use_in_key=False),
        ListItemPropertyAttribute(
            attribute_id="required", display_name="Required",
            description="A run cannot start without a value.",
            allowed_input_types=[PropertyInputType(base_type="bool", placeholder=" ")], use_in_key=False),
    ]
    default_type = "String"

    def get_all_validation_errors(self) -> list[str]:
        errors = []
        if not self.name:
            errors.append("A pipeline parameter has no name.")
        elif not self.name.isidentifier() or iskeyword(self.name):
            errors.append(f"'{self.name}' is not a valid parameter name: it must be a Python name.")
        if self.required and self.value in (None, ""):
            errors.append(f"Parameter '{self.name}' is required but has no value.")
        return errors

    def as_parameter(self) -> Parameter:
        return Parameter(name=self.name, type=self.selected_type or self.default_type,
                         default=None if self.value in (None, "") else self.value,
                         description=self.description or "", required=bool(self.required))


class SkiffAirflowResponse(RuntimePipelineProcessorResponse):
    _type = RuntimeProcessorType.APACHE_AIRFLOW
    _name = SCHEMA_NAME

    def __init__(self, run_url: str, object_storage_url: str, object_storage_path: str,
                 dag_id: str, dag_file: str, code_url: str) -> None:
        super().__init__(run_url, object_storage_url, object_storage_path)
        self.dag_id = dag_id
        self.dag_file = dag_file
        # Elyra's dialog shows an Airflow pipeline's "git_url" as where the DAG went:
        # here, the DAG's code in Airflow.
        self.git_url = code_url

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "git_url": self.git_url, "dag_id": self.dag_id,
                "dag_file": self.dag_file}


@dataclass(frozen=True)
class RuntimeConfig:
    """A ``skiff-airflow`` runtime configuration, ``${NAME}`` references resolved."""

    name: str
    api_endpoint: str
    dag_folder: Path
    cos_endpoint: str
    cos_bucket: str
    cos_username: str
    cos_password: str
    worker_image: str

    @classmethod
    def from_metadata(cls, name: str, metadata: dict[str, Any],
                      environ: dict[str, str] | os._Environ[str] = os.environ) -> RuntimeConfig:
        def value(key: str, required: bool = True) -> str:
            raw = str(metadata.get(key) or "")
            try:
                resolved = expand(raw, environ, where=f"runtime configuration {name!r}, {key}")
            except ValueError:
                if required:
                    raise
                return ""  # needed by some exports only; they say so if it is missing
            if required and not resolved:
                raise ValueError(f"runtime configuration {name!r}: {key} is empty")
            return resolved

        return cls(name=name, api_endpoint=value("api_endpoint").rstrip("/"),
                   dag_folder=Path(value("dag_folder")), cos_endpoint=value("cos_endpoint"),
                   cos_bucket=value("cos_bucket"), cos_username=value("cos_username"),
                   cos_password=value("cos_password"), worker_image=value("worker_image", required=False))

    def s3(self) -> Any:
        return storage.client_from_endpoint(self.cos_endpoint, self.cos_username, self.cos_password)


def expand(text: str, environ: dict[str, str] | os._Environ[str], where: str) -> str:
    """``${NAME}`` and ``${NAME:-default}`` from the environment; an unset NAME is an error."""

    def one(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if environ.get(name):
            return environ[name]
        if default is not None:
            return default
        raise ValueError(f"{where}: ${{{name}}} is not set in the Jupyter server's environment "
                         "(JupyterHub sets it; see skiff.services.workspace.spawn_env)")

    return _VARIABLE.sub(one, text)


def submitting_user(environ: dict[str, str] | os._Environ[str] = os.environ) -> str:
    """Who submits: the JupyterHub user the server belongs to."""
    return environ.get("SKIFF_USER") or environ.get("JUPYTERHUB_USER") or getpass.getuser()


def _number(value: Any) -> float | None:
    if value in (None, "", "None"):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise SpecError(f"resource request {value!r} is not a number") from None


def _schedule_value(value: Any) -> str | None:
    if isinstance(value, PipelineSchedule):
        return value.schedule
    return value.strip() if isinstance(value, str) and value.strip() else None


class SkiffAirflowProcessor(RuntimePipelineProcessor):
    _type = RuntimeProcessorType.APACHE_AIRFLOW
    _name = SCHEMA_NAME

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Elyra maps property ids to classes once, on first use, from the subclasses
        # imported by then; this module may load later, so map again.
        ElyraProperty.build_property_map()

    @property
    def supported_properties(self) -> set[str]:
        return {ENV_VARIABLES, SCHEDULE, ACCESS, TEAM, USES}

    @property
    def pipeline_parameter_class(self) -> type:
        return SkiffPipelineParameter

    # --- Elyra's interface ---

    def process(self, pipeline: Pipeline) -> SkiffAirflowResponse:
        t0 = time.monotonic()
        config = self._config(pipeline)
        # Asked first: a pipeline the catalog refuses leaves nothing behind.
        placed = declared(pipeline)
        catalog = governance.client_for_submission()
        if catalog is not None:
            governance.check(catalog, placed)
        spec = self._publish(pipeline, config)
        path = self._dag_path(config, spec)
        write_atomically(path, dag.render(spec))
        self.log_pipeline_info(pipeline.name, f"DAG {spec.dag_id} written to {path}",
                               duration=time.monotonic() - t0)
        if catalog is not None:
            with catalog:
                workflow = governance.register(catalog, spec.dag_id, placed,
                                               description=spec.description or spec.source)
            self.log_pipeline_info(pipeline.name, f"registered {workflow.get('ref')} in the catalog "
                                                  f"({placed.access})")
        airflow = config.api_endpoint
        return SkiffAirflowResponse(
            run_url=f"{airflow}/dags/{spec.dag_id}", object_storage_url=config.cos_endpoint,
            object_storage_path=f"/{spec.bucket}/{spec.prefix}/", dag_id=spec.dag_id, dag_file=str(path),
            code_url=f"{airflow}/dags/{spec.dag_id}/code")

    def export(self, pipeline: Pipeline, pipeline_export_format: str, pipeline_export_path: str,
               overwrite: bool) -> str:
        self._verify_export_format(pipeline_export_format)
        target = Path(get_absolute_path(self.root_dir, pipeline_export_path))
        if target.exists() and not overwrite:
            raise ValueError(f"File '{target}' already exists.")
        config = self._config(pipeline)
        # The exported file runs the nodes from the S3 store like a submission does.
        spec = self._publish(pipeline, config)
        text = compose.render(spec) if pipeline_export_format == "yaml" else dag.render(spec)
        write_atomically(target, text)
        self.log_pipeline_info(pipeline.name, f"exported as {pipeline_export_format} to {target}")
        return str(target)

    # --- the work ---

    def _config(self, pipeline: Pipeline) -> RuntimeConfig:
        metadata = self._get_metadata_configuration(schemaspace=Runtimes.RUNTIMES_SCHEMASPACE_ID,
                                                    name=pipeline.runtime_config)
        return RuntimeConfig.from_metadata(pipeline.runtime_config, metadata.metadata)

    def _publish(self, pipeline: Pipeline, config: RuntimeConfig) -> PipelineSpec:
        """The pipeline as a spec, its nodes' files uploaded under the submission's folder."""
        spec, sources = build_spec(pipeline, config, root_dir=Path(self.root_dir or os.getcwd()),
                                   owner=submitting_user())
        # The bucket is the platform's (skiff bootstrap s3); a person's keys may not
        # even ask whether it exists, only write under their own DAG namespace.
        s3 = config.s3()
        for node in spec.nodes:
            source_dir, patterns, recursive = sources[node.name]
            try:
                archive = storage.pack(source_dir, patterns, recursive)
            except storage.StorageError as exc:
                raise ValueError(f"node '{node.label}': {exc}") from None
            key = storage.archive_key(spec.prefix, node.name)
            storage.put_bytes(s3, spec.bucket, key, archive, "application/gzip")
            self.log_pipeline_info(pipeline.name, f"uploaded s3://{spec.bucket}/{key}",
                                   operation_name=node.label)
        return spec

    @staticmethod
    def _dag_path(config: RuntimeConfig, spec: PipelineSpec) -> Path:
        return config.dag_folder / identifier(spec.owner, "user name") / f"{identifier(spec.name)}.py"


Sources = dict[str, tuple[Path, list[str], bool]]


def build_spec(pipeline: Pipeline, config: RuntimeConfig, root_dir: Path, owner: str,
               now: dt.datetime | None = None) -> tuple[PipelineSpec, Sources]:
    """The spec of ``pipeline`` and, per node, what to pack: (folder, patterns, recursive).

    Raises :class:`SpecError` (a ``ValueError``, which Elyra shows the user) for
    what this runtime cannot run.
    """
    now = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    submission = f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
    name = identifier(pipeline.name, "pipeline name")
    dag_id = f"{dag_namespace(owner)}{name}"
    prefix = f"{dag_id}/{submission}"

    operations = list(pipeline.operations.values())
    task_ids = _task_ids(operations)
    parameters = [_parameter(p) for p in (pipeline.parameters or [])]
    schedules: set[str] = set()
    pipeline_schedule = _schedule_value(pipeline.pipeline_properties.get(SCHEDULE))

    nodes, sources = [], {}
    inputs_of: dict[str, set[str]] = {}
    for op in dependency_order(operations, key=lambda o: o.id, parents=lambda o: o.parent_operation_ids,
                               label=lambda o: o.name):
        if not isinstance(op, GenericOperation):
            raise SpecError(f"node '{op.name}' is a '{op.classifier}' component: the Skiff runtime runs "
                            "notebooks and Python scripts only")
        kind = CLASSIFIERS.get(op.classifier)
        if kind is None:
            raise SpecError(f"node '{op.name}' ({op.filename}): R scripts cannot run here, the Airflow "
                            "workers have no R")
        node_schedule = _schedule_value(op.elyra_props.get(SCHEDULE))
        if node_schedule:
            schedules.add(node_schedule)
        # Elyra's data passing: a node reads what every node before it wrote or read.
        inputs = set(op.inputs or [])
        for parent in op.parent_operation_ids:
            parent_op = pipeline.operations[parent]
            inputs |= inputs_of[parent] | set(parent_op.outputs or [])
        inputs_of[op.id] = inputs
        path = Path(get_absolute_path(str(root_dir), op.filename))
        env = {k: str(v) for k, v in (op.env_vars.to_dict() if op.env_vars else {}).items()}
        nodes.append(NodeSpec(
            name=task_ids[op.id], label=op.name, kind=kind, filename=path.name,
            bucket=config.cos_bucket, prefix=prefix,
            archive=storage.archive_key(prefix, task_ids[op.id]).removeprefix(prefix + "/"),
            owner=owner, pipeline=dag_id, env=env,
            parameters=list(op.component_props.get(PIPELINE_PARAMETERS) or []),
            inputs=sorted(inputs), outputs=list(op.outputs or []),
            upstream=[task_ids[p] for p in op.parent_operation_ids],
            resources=Resources(cpu=_number(op.cpu), memory_gb=_number(op.memory),
                                gpu=int(_number(op.gpu) or 0)),
            doc=op.doc or "",
        ))
        sources[task_ids[op.id]] = (path.parent, [path.name, *(op.dependencies or [])],
                                    bool(op.include_subdirectories))

    if pipeline_schedule:
        schedules.add(pipeline_schedule)
    if len(schedules) > 1:
        raise SpecError(f"the pipeline has several schedules {sorted(schedules)}: a schedule is the "
                        "pipeline's, set it once in the pipeline's properties")
    spec = PipelineSpec(
        dag_id=dag_id, name=pipeline.name, source=pipeline.source or f"{pipeline.name}.pipeline",
        owner=owner, submission=submission, submitted_at=now.isoformat(timespec="seconds"),
        bucket=config.cos_bucket, prefix=prefix, nodes=nodes, parameters=parameters,
        schedule=check_schedule(next(iter(schedules), None)), description=pipeline.description or "",
        worker_image=config.worker_image,
    )
    return spec, sources


def _parameter(value: Any) -> Parameter:
    """A pipeline parameter, whether Elyra converted it to our class already or not."""
    if isinstance(value, dict):
        value = SkiffPipelineParameter.get_single_instance(value)
    if not isinstance(value, SkiffPipelineParameter):
        raise SpecError(f"pipeline parameter {value!r} is not one of this runtime's")
    return value.as_parameter()


def _task_ids(operations: list[Operation]) -> dict[str, str]:
    """A unique task id per node, from its label."""
    ids: dict[str, str] = {}
    taken: set[str] = set()
    for op in operations:
        base = identifier(op.name or Path(getattr(op, "filename", "") or "node").stem, "node label")
        candidate, n = base, 2
        while candidate in taken:
            candidate, n = f"{base}_{n}", n + 1
        ids[op.id] = candidate
        taken.add(candidate)
    return ids


