"""OpenLineage events from the platform's runs to the catalog (``POST /api/v1/lineage``).

Events are built and sent with openlineage-python: its HTTP transport (retries with
back-off) and its OAuth 2 client-credentials token provider, here for the realm's
``airflow`` client, whose service account the catalog trusts to post lineage.
Two custom facets carry what the catalog records (see the catalog's contract):

- run facet ``skiff_run``: dag_id, dag_run_id, task_id, step, step_version, user,
  parameters, mlflow_run_id, notebook, workflow;
- dataset facet ``skiff_asset``: the catalog asset a dataset is (kind, name) and the
  version's version, location, format, size_bytes, digest.

Configuration, from the environment of the Airflow workers (services/airflow.py,
docker-compose.yml): ``CATALOG_URL``; the token comes from the Keycloak client
Airflow already uses for its logins (``AIRFLOW__KEYCLOAK_AUTH_MANAGER__*``), so the
client secret is not copied into another variable, nor into the notebooks'
environment (the workspace gets ``task_env`` only). Without ``CATALOG_URL`` nothing
is sent (a stack without the catalog); with it, a failed emission raises, because a
model whose history is lost is worse than a task to retry.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import attr

from skiff import run_identity

log = logging.getLogger(__name__)

NAMESPACE = "skiff"
PRODUCER = "https://skiff.local/lineage/skiff.catalog.lineage"
SCHEMA_BASE = "https://skiff.local/lineage/facets/1-0-0"
CLIENT_ID = "airflow"
# Stable run ids: the same task try always maps to the same OpenLineage run.
RUN_NAMESPACE = uuid.UUID("8f5d0f4e-5c0e-4c5d-9d37-6b1f0c2a7e11")


class LineageError(RuntimeError):
    """The catalog did not take an event; the message says what it answered."""


# --- facets -------------------------------------------------------------------

def _facet_classes() -> tuple[type, type]:
    from openlineage.client.generated.base import DatasetFacet, RunFacet

    @attr.define
    class SkiffRunFacet(RunFacet):  # type: ignore[misc]
        dag_id: str | None = attr.field(default=None)
        dag_run_id: str | None = attr.field(default=None)
        task_id: str | None = attr.field(default=None)
        step: str | None = attr.field(default=None)
        step_version: str | None = attr.field(default=None)
        user: str | None = attr.field(default=None)
        parameters: dict[str, Any] | None = attr.field(default=None)
        mlflow_run_id: str | None = attr.field(default=None)
        notebook: str | None = attr.field(default=None)
        workflow: str | None = attr.field(default=None)
        _additional_skip_redact: ClassVar[list[str]] = ["parameters"]

        @staticmethod
        def _get_schema() -> str:
            return f"{SCHEMA_BASE}/SkiffRunFacet.json#/$defs/SkiffRunFacet"

    @attr.define
    class SkiffAssetFacet(DatasetFacet):  # type: ignore[misc]
        kind: str = attr.field(default="dataset")
        name: str = attr.field(default="")
        version: str | None = attr.field(default=None)
        location: str | None = attr.field(default=None)
        format: str | None = attr.field(default=None)
        size_bytes: int | None = attr.field(default=None)
        digest: str | None = attr.field(default=None)

        @staticmethod
        def _get_schema() -> str:
            return f"{SCHEMA_BASE}/SkiffAssetFacet.json#/$defs/SkiffAssetFacet"

    return SkiffRunFacet, SkiffAssetFacet


# --- building events ----------------------------------------------------------

def asset(kind: str, name: str, *, version: str | None = None, location: str | None = None,
          format: str | None = None, size_bytes: int | None = None, digest: str | None = None,
          namespace: str = NAMESPACE) -> dict[str, Any]:
    """An input or output naming a catalog asset (and, for outputs, the version made)."""
    return {"namespace": namespace, "name": f"{kind}/{name}",
            "asset": {"kind": kind, "name": name, "version": None if version is None else str(version),
                      "location": location, "format": format, "size_bytes": size_bytes,
                      "digest": digest}}


def run_id_for(*parts: object) -> str:
    """A UUID for one task try, the same every time (START and COMPLETE share it)."""
    return str(uuid.uuid5(RUN_NAMESPACE, "/".join(str(p) for p in parts)))


def build_event(event_type: str, run_id: str, job_name: str, skiff_run: Mapping[str, Any],
                inputs: Iterable[Mapping[str, Any]] = (), outputs: Iterable[Mapping[str, Any]] = (),
                event_time: dt.datetime | None = None) -> Any:
    """An OpenLineage RunEvent (openlineage-python's ``event_v2``)."""
    from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState

    run_facet_cls, asset_facet_cls = _facet_classes()

    def facets(d: Mapping[str, Any]) -> dict[str, Any]:
        return {"skiff_asset": asset_facet_cls(**{k: v for k, v in d["asset"].items()},
                                               producer=PRODUCER)} if d.get("asset") else {}

    run_facet = run_facet_cls(**{k: v for k, v in skiff_run.items() if v is not None},
                              producer=PRODUCER)
    return RunEvent(
        eventType=RunState[event_type.upper()],
        eventTime=(event_time or dt.datetime.now(dt.UTC)).isoformat(),
        run=Run(runId=run_id, facets={"skiff_run": run_facet}),
        job=Job(namespace=NAMESPACE, name=job_name),
        producer=PRODUCER,
        inputs=[InputDataset(namespace=d["namespace"], name=d["name"], facets=facets(d)) for d in inputs],
        outputs=[OutputDataset(namespace=d["namespace"], name=d["name"], facets=facets(d))
                 for d in outputs],
    )


def to_json(event: Any) -> str:
    from openlineage.client.serde import Serde

    return str(Serde.to_json(event))


# --- sending them ---------------------------------------------------------------

def token_endpoint(environ: Mapping[str, str]) -> str | None:
    server = environ.get("AIRFLOW__KEYCLOAK_AUTH_MANAGER__SERVER_URL")
    realm = environ.get("AIRFLOW__KEYCLOAK_AUTH_MANAGER__REALM", "skiff")
    if not server:
        return None
    return f"{server.rstrip('/')}/realms/{realm}/protocol/openid-connect/token"


def service_token(environ: Mapping[str, str] = os.environ, timeout: float = 30.0) -> str:
    """A client-credentials token of the ``airflow`` client, for calls from Airflow's tasks."""
    import httpx

    secret = environ.get("AIRFLOW__KEYCLOAK_AUTH_MANAGER__CLIENT_SECRET")
    token_url = token_endpoint(environ)
    if not (secret and token_url):
        raise LineageError("no Keycloak client to get a token with: AIRFLOW__KEYCLOAK_AUTH_MANAGER__"
                           "SERVER_URL and CLIENT_SECRET are not set")
    resp = httpx.post(token_url, data={"grant_type": "client_credentials", "client_id": CLIENT_ID,
                                       "client_secret": secret}, timeout=timeout)
    if resp.status_code != 200:
        raise LineageError(f"Keycloak refused a token to client {CLIENT_ID!r}: HTTP {resp.status_code} "
                           f"{resp.text[:200]}")
    return str(resp.json()["access_token"])


class Emitter:
    """Sends events to the catalog with the ``airflow`` client's service-account token."""

    def __init__(self, catalog_url: str, token_url: str, client_secret: str,
                 client_id: str = CLIENT_ID, timeout: float = 30.0) -> None:
        from openlineage.client.transport.http import (
            HttpConfig,
            HttpTransport,
            OAuth2ClientCredentialsTokenProvider,
        )

        auth = OAuth2ClientCredentialsTokenProvider({
            "clientId": client_id, "clientSecret": client_secret, "tokenEndpoint": token_url,
            # Keycloak takes the secret in the form as readily as in a Basic header.
            "clientAuthMethod": "client_secret_post"})
        self.catalog_url = catalog_url.rstrip("/") + "/"
        self.transport = HttpTransport(HttpConfig(url=self.catalog_url, endpoint="api/v1/lineage",
                                                  timeout=timeout, auth=auth))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Emitter | None:
        """The emitter the environment configures, or None where no catalog is set up."""
        url = environ.get("CATALOG_URL")
        if not url:
            return None
        secret = environ.get("AIRFLOW__KEYCLOAK_AUTH_MANAGER__CLIENT_SECRET")
        token_url = token_endpoint(environ)
        if not (secret and token_url):
            raise LineageError("CATALOG_URL is set but not the Keycloak client Airflow uses "
                               "(AIRFLOW__KEYCLOAK_AUTH_MANAGER__SERVER_URL/CLIENT_SECRET): "
                               "no token to post lineage with")
        return cls(url, token_url, secret)

    def emit(self, event: Any) -> dict[str, Any]:
        """Send one event; the catalog's answer ({run, recorded: [refs]})."""
        import requests

        try:
            resp = self.transport.emit(event)
        except requests.HTTPError as exc:
            body = exc.response.text[:500] if exc.response is not None else ""
            raise LineageError(f"the catalog refused a lineage event of job {event.job.name}: "
                               f"{exc}: {body}") from exc
        except (requests.RequestException, RuntimeError) as exc:
            raise LineageError(f"lineage event of job {event.job.name} not delivered to "
                               f"{self.catalog_url}: {exc}") from exc
        try:
            return dict(resp.json())
        except ValueError:
            return {}


def emit(event_type: str, run_id: str, job_name: str, skiff_run: Mapping[str, Any],
         inputs: Iterable[Mapping[str, Any]] = (), outputs: Iterable[Mapping[str, Any]] = (),
         environ: Mapping[str, str] = os.environ) -> dict[str, Any] | None:
    """Build and send one event if a catalog is configured; its answer, or None if none is."""
    emitter = Emitter.from_env(environ)
    if emitter is None:
        log.info("CATALOG_URL is not set: no lineage for %s", job_name)
        return None
    answer = emitter.emit(build_event(event_type, run_id, job_name, skiff_run, list(inputs),
                                      list(outputs)))
    log.info("lineage of %s (%s): recorded %s", job_name, event_type, answer.get("recorded"))
    return answer


# --- from inside an Airflow task ----------------------------------------------

def airflow_run(context: Mapping[str, Any], step: str | None = None, step_version: str | None = None,
                user: str | None = None, **extra: Any) -> tuple[str, str, dict[str, Any]]:
    """(run id, job name, skiff_run facet) of the running Airflow task try."""
    ti, dag_run = context["ti"], context["dag_run"]
    try_number = getattr(ti, "try_number", 1)
    run_id = run_id_for(dag_run.dag_id, dag_run.run_id, ti.task_id, try_number)
    who = user or run_identity.started_by(dag_run, getattr(context.get("dag"), "owner", None))
    facet = {"dag_id": dag_run.dag_id, "dag_run_id": dag_run.run_id, "task_id": ti.task_id,
             "step": step or ti.task_id, "step_version": step_version, "user": who, **extra}
    return run_id, f"{dag_run.dag_id}.{ti.task_id}", facet


def sha256_of(data: bytes | Path) -> str:
    digest = hashlib.sha256()
    if isinstance(data, Path):
        with data.open("rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
    else:
        digest.update(data)
    return f"sha256:{digest.hexdigest()}"


def recorded_version(answer: Mapping[str, Any] | None, asset_ref: str) -> str | None:
    """The version the catalog recorded for ``asset_ref`` ("KIND/NAME") in its answer."""
    for ref in (answer or {}).get("recorded", []):
        name, _, version = str(ref).partition("@")
        if name == asset_ref and version:
            return version
    return None
