"""The platform's APIs as the console calls them: the catalog and the notification
service with the signed-in user's access token (they decide what the user may
see), MLflow's REST API at its internal address without one (the portal is trusted;
MLflow itself has no users, Traefik's forward-auth lets every role in).

A service that is not configured, unreachable or failing raises :class:`Unavailable`
naming it, so a page can say "notifications service unavailable" and show the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

CATALOG = "SKIFF_CATALOG_URL"
NOTIFICATIONS = "SKIFF_NOTIFICATIONS_URL"
MLFLOW = "SKIFF_MLFLOW_URL"
LABELS = {CATALOG: "catalog", NOTIFICATIONS: "notifications service", MLFLOW: "MLflow"}
# MLflow runs with --static-prefix /mlflow: its REST API is under it too.
MLFLOW_API = "/mlflow/api/2.0/mlflow"


def quoted(value: str) -> str:
    """A string literal of MLflow's search filter."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class Unavailable(Exception):
    """A service could not answer; the message names it and says why."""

    def __init__(self, upstream: str, why: str) -> None:
        self.service = LABELS.get(upstream, upstream)
        super().__init__(f"{self.service} unavailable: {why}")


class NotFound(Exception):
    """The service answered 404 (missing, or not visible to this user: the same answer)."""


class Apis:
    def __init__(self, upstreams: Mapping[str, str], timeout: float = 5.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.upstreams = upstreams
        self.timeout = timeout
        self.transport = transport

    def available(self, upstream: str) -> bool:
        return bool(self.upstreams.get(upstream))

    def _request(self, upstream: str, method: str, path: str, token: str | None = None,
                 params: Mapping[str, Any] | None = None, body: Any = None) -> Any:
        base = self.upstreams.get(upstream)
        if not base:
            raise Unavailable(upstream, f"not configured ({upstream} is not set)")
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            with httpx.Client(timeout=self.timeout, transport=self.transport) as client:
                resp = client.request(method, f"{base.rstrip('/')}{path}", params=params,
                                      json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise Unavailable(upstream, f"{type(exc).__name__}: {exc}") from exc
        if resp.status_code == 404:
            raise NotFound(path)
        if resp.status_code != 200:
            raise Unavailable(upstream, f"HTTP {resp.status_code}: {resp.text[:200]}")
        try:
            return resp.json()
        except ValueError as exc:
            raise Unavailable(upstream, "answered something that is not JSON") from exc

    # --- catalog (as the user) ---------------------------------------------------------

    def projects(self, token: str) -> list[dict[str, Any]]:
        return list(self._request(CATALOG, "GET", "/api/v1/projects", token)["projects"])

    def project(self, token: str, name: str) -> dict[str, Any]:
        return dict(self._request(CATALOG, "GET", f"/api/v1/projects/{quote(name, safe='')}",
                                  token))

    # --- notifications (as the user) ---------------------------------------------------

    def runs(self, token: str, limit: int = 50) -> list[dict[str, Any]]:
        return list(self._request(NOTIFICATIONS, "GET", "/api/v1/runs", token,
                                  {"limit": limit})["runs"])

    def events(self, token: str, run: str, limit: int = 500) -> list[dict[str, Any]]:
        return list(self._request(NOTIFICATIONS, "GET", f"/api/v1/runs/{quote(run, safe='/')}/events",
                                  token, {"limit": limit})["events"])

    # --- MLflow (internal, no user) ----------------------------------------------------

    def models(self) -> list[dict[str, Any]]:
        found = self._request(MLFLOW, "GET", f"{MLFLOW_API}/registered-models/search",
                              params={"max_results": 100})
        return list(found.get("registered_models", []))

    def model(self, name: str) -> dict[str, Any]:
        return dict(self._request(MLFLOW, "GET", f"{MLFLOW_API}/registered-models/get",
                                  params={"name": name})["registered_model"])

    def model_version(self, name: str, version: str) -> dict[str, Any]:
        return dict(self._request(MLFLOW, "GET", f"{MLFLOW_API}/model-versions/get",
                                  params={"name": name, "version": version})["model_version"])

    def monitoring_runs(self, experiment: str, tags: Mapping[str, str],
                        limit: int = 500) -> list[dict[str, Any]]:
        """The runs of ``experiment`` with these tag values, oldest first; none without the
        experiment."""
        try:
            found = self._request(MLFLOW, "GET", f"{MLFLOW_API}/experiments/get-by-name",
                                  params={"experiment_name": experiment})
        except NotFound:
            return []
        experiment_id = found["experiment"]["experiment_id"]
        where = " and ".join(f"tags.`{key}` = {quoted(value)}" for key, value in tags.items())
        runs = self._request(MLFLOW, "POST", f"{MLFLOW_API}/runs/search", body={
            "experiment_ids": [experiment_id], "max_results": limit, "filter": where,
            "order_by": ["attributes.start_time DESC"]})
        return list(reversed(runs.get("runs", [])))
