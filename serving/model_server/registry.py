"""MLflow's model registry through its REST API: alias -> version -> artifact bytes.

Three GETs per new version, so the server needs httpx rather than mlflow-skinny
and its dependencies. It relies on what our MLflow server does (``mlflow server
--serve-artifacts``): a version's download URI is ``mlflow-artifacts:/...`` and
the tracking server itself serves those files.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from skiff import model_origin

API = "/api/2.0/mlflow"
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"


class RegistryError(RuntimeError):
    """MLflow did not answer as expected; the message says which call and why."""


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: str
    source: str
    run_id: str


class Registry:
    """A small MLflow REST client; one per process, safe to share between threads."""

    def __init__(self, tracking_uri: str, timeout: float = 15.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.tracking_uri = tracking_uri.rstrip("/")
        self._http = httpx.Client(base_url=self.tracking_uri, timeout=timeout, transport=transport)

    def _get(self, path: str, **params: str) -> httpx.Response:
        try:
            return self._http.get(path, params=params or None)
        except httpx.HTTPError as exc:
            raise RegistryError(f"GET {self.tracking_uri}{path}: {type(exc).__name__}: {exc}") from exc

    def _json(self, path: str, **params: str) -> dict[str, Any]:
        resp = self._get(path, **params)
        if resp.status_code != 200:
            raise RegistryError(f"GET {path} {params} answered {resp.status_code}: {resp.text[:300]}")
        return resp.json()  # type: ignore[no-any-return]

    def resolve(self, name: str, alias: str) -> ModelVersion | None:
        """The version ``name@alias`` points to; None when the model or alias does not exist."""
        resp = self._get(f"{API}/registered-models/alias", name=name, alias=alias)
        # No such model: 404. A model without that alias: 400 INVALID_PARAMETER_VALUE,
        # "Registered model alias X not found." (MLflow 3.17).
        if resp.status_code == 404 or (resp.status_code == 400 and "not found" in resp.text):
            return None
        if resp.status_code != 200:
            raise RegistryError(f"resolving {name}@{alias} answered {resp.status_code}: {resp.text[:300]}")
        mv = resp.json()["model_version"]
        return ModelVersion(mv["name"], str(mv["version"]), mv.get("source", ""), mv.get("run_id", ""))

    def download_uri(self, name: str, version: str) -> str:
        """Where the version's files are (``mlflow-artifacts:/<exp>/models/<id>/artifacts``)."""
        doc = self._json(f"{API}/model-versions/get-download-uri", name=name, version=version)
        return str(doc["artifact_uri"])

    def artifact(self, artifact_uri: str, relative: str) -> bytes:
        """One file under ``artifact_uri``, through the tracking server's artifact proxy."""
        try:
            model_origin.check(artifact_uri, self.tracking_uri)
        except model_origin.ForeignModel as exc:
            raise RegistryError(str(exc)) from exc
        parts = urlsplit(artifact_uri)
        path = quote(f"{parts.path.strip('/')}/{relative}")
        try:
            resp = self._http.get(f"{ARTIFACTS}/{path}")
        except httpx.HTTPError as exc:
            raise RegistryError(f"downloading {relative}: {type(exc).__name__}: {exc}") from exc
        if resp.status_code != 200:
            raise RegistryError(f"downloading {artifact_uri}/{relative} answered {resp.status_code}")
        return resp.content

    def close(self) -> None:
        self._http.close()
