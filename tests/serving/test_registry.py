"""The MLflow REST client, against a fake transport that answers as MLflow 3.17 does."""

from __future__ import annotations

import httpx
import pytest

from serving.model_server.registry import Registry, RegistryError

pytestmark = pytest.mark.unit

ALIAS = "/api/2.0/mlflow/registered-models/alias"
URI = "/api/2.0/mlflow/model-versions/get-download-uri"
ARTIFACT_URI = "mlflow-artifacts:/2/models/m-abc/artifacts"


def mlflow(request: httpx.Request) -> httpx.Response:
    path, q = request.url.path, request.url.params
    if path == ALIAS:
        if q["name"] != "bracelet":
            return httpx.Response(404, json={"error_code": "RESOURCE_DOES_NOT_EXIST",
                                             "message": "Registered Model with name=x not found"})
        if q["alias"] != "champion":
            return httpx.Response(400, json={"error_code": "INVALID_PARAMETER_VALUE",
                                             "message": "Registered model alias nope not found."})
        return httpx.Response(200, json={"model_version": {
            "name": "bracelet", "version": "3", "source": "models:/m-abc", "run_id": "r1"}})
    if path == URI:
        return httpx.Response(200, json={"artifact_uri": ARTIFACT_URI})
    if path == "/api/2.0/mlflow-artifacts/artifacts/2/models/m-abc/artifacts/MLmodel":
        return httpx.Response(200, content=b"flavors: {}")
    return httpx.Response(500, text="unexpected")


@pytest.fixture
def registry() -> Registry:
    return Registry("http://mlflow:5000/", transport=httpx.MockTransport(mlflow))


def test_the_alias_resolves_to_its_version(registry: Registry) -> None:
    mv = registry.resolve("bracelet", "champion")
    assert mv is not None and (mv.name, mv.version, mv.source) == ("bracelet", "3", "models:/m-abc")


@pytest.mark.parametrize(("name", "alias"), [("other", "champion"), ("bracelet", "nope")])
def test_no_model_or_no_alias_is_none(registry: Registry, name: str, alias: str) -> None:
    assert registry.resolve(name, alias) is None


def test_artifacts_are_read_through_the_tracking_server(registry: Registry) -> None:
    uri = registry.download_uri("bracelet", "3")
    assert uri == ARTIFACT_URI
    assert registry.artifact(uri, "MLmodel") == b"flavors: {}"


def test_other_answers_and_stores_are_errors(registry: Registry) -> None:
    with pytest.raises(RegistryError, match="500"):
        registry.artifact(ARTIFACT_URI, "missing")
    with pytest.raises(RegistryError, match="--serve-artifacts"):
        registry.artifact("s3://mlflow/2/models/m-abc/artifacts", "MLmodel")


def test_an_unreachable_server_is_a_registry_error() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(RegistryError, match="ConnectError"):
        Registry("http://mlflow:5000", transport=httpx.MockTransport(refuse)).resolve("bracelet", "c")


@pytest.mark.parametrize("uri", ["mlflow-artifacts://attacker.example:80/2/models/m-abc/artifacts",
                                 "mlflow-artifacts://mlflow:5001/2/models/m-abc/artifacts"])
def test_a_foreign_artifact_host_is_refused_before_any_request(uri: str) -> None:
    asked: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        asked.append(request)
        return httpx.Response(200, content=b"a model from elsewhere")

    registry = Registry("http://mlflow:5000", transport=httpx.MockTransport(record))
    with pytest.raises(RegistryError, match="only from this platform's MLflow"):
        registry.artifact(uri, "MLmodel")
    assert asked == []


def test_our_own_server_named_in_full_is_served(registry: Registry) -> None:
    named = "mlflow-artifacts://mlflow:5000/2/models/m-abc/artifacts"
    assert registry.artifact(named, "MLmodel") == b"flavors: {}"
