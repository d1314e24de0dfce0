"""Attacks on the model registry: MLflow itself refuses, by the platform's roles.

What the model server serves is whatever version holds the ``champion`` alias, so
moving an alias is the door that matters. A viewer (through the gateway, with
their own token, or straight at MLflow's port) and a caller without any token try
it on a model of this test; a data scientist does the same as the control. Every
refusal is MLflow's own answer (serving/mlflow_auth.py): 403 PERMISSION_DENIED or
401 UNAUTHENTICATED.
"""

from __future__ import annotations

import ssl
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from skiff import keycloak
from skiff.native.context import Context
from skiff.services import mlflow

pytestmark = pytest.mark.integration


@dataclass
class Registry:
    internal: str  # MLflow's own address, inside the platform's network
    public: str  # through Traefik
    trust: ssl.SSLContext
    model: str
    version: str
    tokens: dict[str, str]

    def call(self, method: str, path: str, who: str | None, body: dict[str, object],
             public: bool = False) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}
        base = self.public if public else self.internal
        # MLflow reads a GET's arguments from the query, anything else's from the JSON body.
        args = {"params": body} if method == "GET" else {"json": body}
        return httpx.request(method, f"{base}/api/2.0/mlflow/{path}", headers=headers, timeout=30,
                             verify=self.trust if public else True, **args)  # type: ignore[arg-type]

    def alias(self, who: str | None, public: bool = False) -> httpx.Response:
        return self.call("POST", "registered-models/alias", who,
                         {"name": self.model, "alias": "champion", "version": self.version}, public)


@pytest.fixture(scope="module")
def registry(stack: Context) -> Iterator[Registry]:
    s = stack.settings
    suffix = uuid.uuid4().hex[:8]
    admin = keycloak.admin_client(s)
    names = {"scientist": f"sec-ds-{suffix}", "viewer": f"sec-viewer-{suffix}"}
    roles = {"scientist": "data-scientist", "viewer": "viewer"}
    tokens = {}
    for who, name in names.items():
        password = keycloak.create_user(s, name, roles[who], None, admin=admin)
        tokens[who] = keycloak.user_token(s, name, password)
    trust = ssl.create_default_context(cafile=str(stack.root / "certs" / "ca.crt"))
    reg = Registry(mlflow.tracking_uri(stack), f"{s.public_url}/mlflow", trust, f"security-{suffix}", "",
                   tokens)
    try:
        # The data scientist makes a model with one version (the control: allowed).
        experiment = reg.call("POST", "experiments/create", "scientist", {"name": f"security-{suffix}"})
        assert experiment.status_code == 200, experiment.text
        run = reg.call("POST", "runs/create", "scientist",
                       {"experiment_id": experiment.json()["experiment_id"]})
        assert run.status_code == 200, run.text
        run_id = run.json()["run"]["info"]["run_id"]
        assert reg.call("POST", "registered-models/create", "scientist",
                        {"name": reg.model}).status_code == 200
        version = reg.call("POST", "model-versions/create", "scientist",
                           {"name": reg.model, "source": f"runs:/{run_id}/model", "run_id": run_id})
        assert version.status_code == 200, version.text
        reg.version = version.json()["model_version"]["version"]
        yield reg
    finally:
        reg.call("DELETE", "registered-models/delete", "scientist", {"name": reg.model})
        for name in names.values():
            found = keycloak.find_user(admin, name)
            if found is not None:
                admin.delete_user(found["id"])


def refused(answer: httpx.Response, status: int, code: str) -> None:
    assert answer.status_code == status, answer.text
    assert answer.json()["error_code"] == code


def test_a_viewer_cannot_move_the_champion(registry: Registry) -> None:
    refused(registry.alias("viewer"), 403, "PERMISSION_DENIED")
    refused(registry.alias("viewer", public=True), 403, "PERMISSION_DENIED")


def test_a_viewer_cannot_register_a_version(registry: Registry) -> None:
    answer = registry.call("POST", "model-versions/create", "viewer",
                           {"name": registry.model, "source": "runs:/0/model"})
    refused(answer, 403, "PERMISSION_DENIED")


def test_without_a_token_the_champion_does_not_move(registry: Registry) -> None:
    refused(registry.alias(None), 401, "UNAUTHENTICATED")
    refused(registry.call("DELETE", "registered-models/alias", None,
                          {"name": registry.model, "alias": "champion"}), 401, "UNAUTHENTICATED")


def test_a_forged_token_is_refused(registry: Registry) -> None:
    registry.tokens["forged"] = registry.tokens["viewer"][:-8] + "AAAAAAAA"
    answer = registry.alias("forged")
    assert answer.status_code == 401, answer.text


def test_a_viewer_reads_and_a_data_scientist_moves_the_alias(registry: Registry) -> None:
    read = registry.call("GET", "registered-models/get", "viewer", {"name": registry.model})
    assert read.status_code == 200, read.text
    moved = registry.alias("scientist")
    assert moved.status_code == 200, moved.text
    got = httpx.get(f"{registry.internal}/api/2.0/mlflow/registered-models/alias",
                    params={"name": registry.model, "alias": "champion"}, timeout=30)
    assert got.json()["model_version"]["version"] == registry.version
