"""Request bodies and kind-specific specs, validated by pydantic.

A body that does not validate is a 422 naming the first offending field
(``spec.s3.bucket``); every problem is listed under ``errors``. Top-level
bodies refuse unknown fields (a typo is not silently dropped); specs keep
unknown keys, so a client may record more than the catalog interprets.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from serving.catalog.errors import ApiError

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
NAME = re.compile(NAME_PATTERN)
KINDS = ("dataset", "model", "data_source", "workflow", "service")
ACCESS = ("private", "team", "public")
# An access level's reach, for the workflow visibility rule.
RANK = {"private": 0, "team": 1, "public": 2}
REF = re.compile(r"^(?P<kind>[a-z_]+)/(?P<name>[A-Za-z0-9][A-Za-z0-9._-]{0,127})"
                 r"(?:@(?P<version>[A-Za-z0-9][A-Za-z0-9._+-]{0,127}))?$")

Name = Annotated[str, Field(pattern=NAME_PATTERN)]
Kind = Literal["dataset", "model", "data_source", "workflow", "service"]
Access = Literal["private", "team", "public"]
Ref = Annotated[str, Field(pattern=r"^(dataset|model|data_source|workflow|service)/"
                                    r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ProjectCreate(Strict):
    name: Name
    description: str = ""
    team: str | None = None
    access: Access | None = None


class ProjectPatch(Strict):
    description: str | None = None
    team: str | None = None
    access: Access | None = None


class AssetCreate(Strict):
    kind: Kind
    name: Name
    description: str = ""
    team: str | None = None
    access: Access | None = None
    location: str | None = None
    format: str | None = None
    size_bytes: Annotated[int, Field(ge=0)] | None = None
    digest: str | None = None
    spec: dict[str, Any] = Field(default_factory=dict)
    projects: list[Name] = Field(default_factory=list)
    # Admins only (the platform registering something on a user's behalf).
    owner: str | None = None


class AssetPatch(Strict):
    description: str | None = None
    team: str | None = None
    access: Access | None = None
    location: str | None = None
    format: str | None = None
    size_bytes: Annotated[int, Field(ge=0)] | None = None
    digest: str | None = None
    spec: dict[str, Any] | None = None


class WorkflowSpec(Open):
    engine: Literal["airflow", "elyra"]
    dag_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,250}$")]
    uses: list[Ref] = Field(default_factory=list)
    notebook: str | None = None


class WorkflowCheck(Strict):
    access: Access
    team: str | None = None
    uses: list[Ref] = Field(default_factory=list)
    # The workflow being checked, for the message; optional.
    name: str | None = None


class Parameter(Open):
    type: str
    default: Any = None
    description: str | None = None


class Resources(Strict):
    cpu: Annotated[float, Field(gt=0)] | None = None
    memory: Annotated[str, Field(pattern=r"^[0-9]+(\.[0-9]+)?([KMGT]i?|[kmgt])?[bB]?$")] | None = None
    gpu: Annotated[int, Field(ge=0)] | None = None


class ServiceSpec(Open):
    version: Annotated[str, Field(min_length=1)]
    image: str | None = None
    notebook: str | None = None
    parameters: dict[Name, Parameter] = Field(default_factory=dict)
    resources: Resources = Field(default_factory=Resources)


class S3Source(Open):
    endpoint: Annotated[str, Field(min_length=1)]
    bucket: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")]
    prefix: str | None = None
    region: str | None = None


class PostgresSource(Open):
    host: Annotated[str, Field(min_length=1)]
    port: Annotated[int, Field(ge=1, le=65535)]
    database: Annotated[str, Field(min_length=1)]
    username: Annotated[str, Field(min_length=1)]


class CassandraSource(Open):
    hosts: Annotated[list[str], Field(min_length=1)]
    port: Annotated[int, Field(ge=1, le=65535)]
    keyspace: Annotated[str, Field(min_length=1)]
    username: str | None = None


class S3Secret(Strict):
    access_key: Annotated[str, Field(min_length=1)]
    secret_key: Annotated[str, Field(min_length=1)]


class PasswordSecret(Strict):
    password: Annotated[str, Field(min_length=1)]


class DataSourceSpec(Open):
    type: Literal["s3", "postgresql", "cassandra"]
    managed: bool | None = None
    s3: S3Source | None = None
    postgresql: PostgresSource | None = None
    cassandra: CassandraSource | None = None
    secret: dict[str, Any] | None = None

    @model_validator(mode="after")
    def section_of_type(self) -> DataSourceSpec:
        if getattr(self, self.type) is None:
            raise ValueError(f"a data source of type {self.type} needs its `{self.type}` section")
        return self


SECRET_MODELS: dict[str, type[BaseModel]] = {
    "s3": S3Secret, "postgresql": PasswordSecret, "cassandra": PasswordSecret}
SPEC_MODELS: dict[str, type[BaseModel]] = {
    "workflow": WorkflowSpec, "service": ServiceSpec, "data_source": DataSourceSpec}


def field_path(loc: tuple[Any, ...], prefix: str = "") -> str:
    parts = [str(p) for p in loc if not (isinstance(p, str) and p.startswith("function-"))]
    path = ".".join(parts)
    return f"{prefix}.{path}" if prefix and path else (prefix or path or "body")


def invalid_body(exc: ValidationError, prefix: str = "") -> ApiError:
    errors = [{"field": field_path(e["loc"], prefix), "message": e["msg"]} for e in exc.errors()]
    first = errors[0]
    return ApiError(422, "invalid", f"{first['field']}: {first['message']}",
                    field=first["field"], errors=errors)


M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], data: Any, prefix: str = "") -> M:
    if not isinstance(data, dict):
        raise ApiError(422, "invalid", f"{prefix or 'body'}: expected a JSON object",
                       field=prefix or "body")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid_body(exc, prefix) from exc


def parse_ref(ref: str, field: str = "ref") -> tuple[str, str, str | None]:
    """``KIND/NAME[@VERSION]`` -> (kind, name, version)."""
    match = REF.match(ref) if isinstance(ref, str) else None
    if not match or match["kind"] not in KINDS:
        raise ApiError(422, "invalid", f"{field}: {ref!r} is not KIND/NAME[@VERSION] with KIND one "
                       f"of {', '.join(KINDS)}", field=field)
    return match["kind"], match["name"], match["version"]
