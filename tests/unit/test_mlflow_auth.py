"""MLflow's rules by role (serving/mlflow_auth.py) and whose token a process sends (skiff.mlflow_token).

The real server applies them in tests/security/test_mlflow_roles.py; here, each
path MLflow's clients use is classified as its rules say.
"""

from __future__ import annotations

import pytest

from serving.mlflow_auth import GOVERN, READ, REGISTER, TRACK, action, decide
from skiff import mlflow_token

pytestmark = pytest.mark.unit

API = "/mlflow/api/2.0/mlflow"


@pytest.mark.parametrize(("method", "path", "expected"), [
    ("GET", f"{API}/registered-models/alias", READ),
    ("GET", "/mlflow/health", READ),
    ("POST", f"{API}/runs/search", READ),
    ("POST", f"{API}/registered-models/get-latest-versions", READ),
    ("POST", "/mlflow/ajax-api/2.0/mlflow/experiments/search", READ),
    ("POST", f"{API}/runs/create", TRACK),
    ("POST", f"{API}/runs/log-batch", TRACK),
    ("PUT", "/mlflow/api/2.0/mlflow-artifacts/artifacts/1/abc/model.onnx", TRACK),
    ("POST", f"{API}/registered-models/create", REGISTER),
    ("POST", f"{API}/model-versions/create", REGISTER),
    ("POST", f"{API}/registered-models/alias", GOVERN),
    ("DELETE", f"{API}/registered-models/alias", GOVERN),
    ("POST", "/mlflow/ajax-api/2.0/mlflow/registered-models/alias", GOVERN),
    ("POST", f"{API}/model-versions/transition-stage", GOVERN),
    ("POST", f"{API}/model-versions/set-tag", GOVERN),
    ("DELETE", f"{API}/registered-models/delete", GOVERN),
    ("PATCH", f"{API}/model-versions/update", GOVERN),
])
def test_each_request_is_classified(method: str, path: str, expected: str) -> None:
    assert action(method, path) == expected


def test_viewers_and_citizens_read_only() -> None:
    for role in ("viewer", "citizen"):
        assert decide(READ, frozenset({role})) is None
        for act in (TRACK, REGISTER, GOVERN):
            refused = decide(act, frozenset({role, "offline_access"}))
            assert refused is not None and refused[0] == 403
            assert role in refused[1]


def test_writers_and_the_platform_may_change_anything() -> None:
    for role in ("admin", "data-engineer", "data-scientist"):
        assert all(decide(act, frozenset({role})) is None for act in (READ, TRACK, REGISTER, GOVERN))
    assert decide(GOVERN, frozenset(), service=True) is None


def test_without_a_token_what_is_served_cannot_change() -> None:
    assert [decide(act, None) for act in (READ, TRACK, REGISTER)] == [None, None, None]
    refused = decide(GOVERN, None)
    assert refused is not None and refused[0] == 401 and "Bearer" in refused[1]


def test_the_process_sends_whoever_it_runs_as() -> None:
    assert mlflow_token.source({}) is None
    assert mlflow_token.source({"MLFLOW_TRACKING_TOKEN": "t", "SKIFF_TOKEN": "s"}) is None
    given = mlflow_token.source({"SKIFF_TOKEN": "s"})
    assert given is not None and given() == "s"
    # A pipeline node's environment holds neither the hub's token nor Airflow's secret.
    assert mlflow_token.source({"S3_ACCESS_KEY": "skiff-erin", "AIRFLOW_CTX_DAG_ID": "erin__p"}) is None
    assert mlflow_token.source({"AIRFLOW__KEYCLOAK_AUTH_MANAGER__CLIENT_SECRET": "x"}) is not None
