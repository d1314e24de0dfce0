"""What the landing page lists: each service's public address and its health.

Health is asked at the internal address (the SKIFF_*_URL variables Traefik's
routes use too), all services at once with a short timeout, so a service that
hangs costs the page two seconds, not the sum of them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx


@dataclass(frozen=True)
class Entry:
    key: str
    title: str
    what: str
    # Path on the public address people open.
    path: str
    # Health path at the internal address of upstream ``upstream`` (SKIFF_<upstream>_URL).
    upstream: str
    health: str
    # Shown only to holders of one of these realm roles (empty: everyone).
    roles: tuple[str, ...] = ()


def catalogue(realm: str) -> list[Entry]:
    return [
        Entry("jupyterhub", "JupyterHub", "Notebooks and the Elyra pipeline editor",
              "/jupyter/", "JUPYTERHUB", "/jupyter/hub/health"),
        Entry("airflow", "Airflow", "Pipelines, schedules and runs",
              "/airflow/", "AIRFLOW", "/airflow/api/v2/monitor/health"),
        Entry("mlflow", "MLflow", "Experiments, runs and the model registry",
              "/mlflow/", "MLFLOW", "/mlflow/health"),
        Entry("model", "Model API", "REST predictions (bearer tokens); OpenAPI document",
              "/model/openapi.json", "MODEL_SERVER", "/healthz"),
        Entry("account", "Your account", "Password and sessions (Keycloak)",
              f"/auth/realms/{realm}/account/", "KEYCLOAK",
              f"/auth/realms/{realm}/.well-known/openid-configuration"),
        Entry("catalog", "Catalog API", "Projects, data sources, datasets, lineage (bearer tokens)",
              "/catalog/api/v1/projects", "CATALOG", "/healthz"),
        Entry("notifications", "Notifications API",
              "Events of runs and notebooks: logs, metrics, images, alerts (bearer tokens or "
              "this session)", "/events/api/v1/runs", "NOTIFICATIONS", "/healthz"),
        Entry("prometheus", "Prometheus", "Metrics of the platform's services, PromQL",
              "/prometheus/", "PROMETHEUS", "/prometheus/-/healthy",
              roles=("admin", "data-engineer")),
        Entry("dashboard", "Traefik dashboard", "Routes and services of the entry point",
              "/dashboard/", "", "", roles=("admin",)),
    ]


@dataclass(frozen=True)
class Status:
    entry: Entry
    url: str
    # "up", "down" or "-" (not checked).
    health: str
    detail: str = ""


def _check(client: httpx.Client, url: str) -> tuple[str, str]:
    try:
        resp = client.get(url)
    except httpx.HTTPError as exc:
        return "down", type(exc).__name__
    return ("up", "") if resp.status_code == 200 else ("down", f"HTTP {resp.status_code}")


def statuses(entries: list[Entry], public_url: str, upstreams: Mapping[str, str], roles: set[str],
             timeout: float = 2.0,
             client_factory: Callable[[], httpx.Client] | None = None) -> list[Status]:
    """The entries this user may see, each with its public URL and live health."""
    visible = [e for e in entries if not e.roles or roles & set(e.roles)]
    targets = {e.key: f"{upstreams[f'SKIFF_{e.upstream}_URL']}{e.health}"
               for e in visible if e.upstream and f"SKIFF_{e.upstream}_URL" in upstreams}
    make = client_factory or (lambda: httpx.Client(timeout=timeout))
    with make() as client, ThreadPoolExecutor(max_workers=max(1, len(targets))) as pool:
        futures = {key: pool.submit(_check, client, url) for key, url in targets.items()}
        results = {key: f.result() for key, f in futures.items()}
    return [Status(e, f"{public_url}{e.path}", *results.get(e.key, ("-", "")))
            for e in visible]
