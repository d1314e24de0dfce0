"""Fixtures of the catalog's tests: the running catalog, and real people to call it.

People are real Keycloak users of realm skiff, made per test session with unique
names (reruns never collide), in two teams; their tokens are real password-grant
tokens (client airflow). The service caller is the client-credentials token of
client airflow, as Airflow's tasks use it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from skiff import keycloak
from skiff.native.context import Context
from skiff.native.probes import http_ok
from skiff.services import catalog
from tests.catalog import people as people_mod


@dataclass
class Api:
    """The catalog's API as one caller: ``api.get("/assets")`` -> httpx.Response."""

    base: str
    token: str | None = field(repr=False)
    name: str = ""

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}) or {})
        if self.token is not None:
            headers.setdefault("Authorization", f"Bearer {self.token}")
        url = path if path.startswith(("/healthz", "/openapi")) else f"/api/v1{path}"
        return httpx.request(method, f"{self.base}{url}", headers=headers, timeout=30, **kwargs)

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("POST", path, **kw)

    def put(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("PUT", path, **kw)

    def patch(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("PATCH", path, **kw)

    def delete(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("DELETE", path, **kw)


@dataclass
class World:
    """Two teams and their people. alice and bob: team a; carol: team b; dave: both."""

    suffix: str
    team_a: str
    team_b: str
    alice: Api
    bob: Api
    carol: Api
    dave: Api
    admin: Api
    service: Api
    anonymous: Api

    def name(self, stem: str) -> str:
        """A unique asset/project name for this session."""
        return f"{stem}-{self.suffix}"


@pytest.fixture(scope="session")
def catalog_url(stack: Context) -> str:
    url = catalog.internal_url(stack.settings)
    try:
        http_ok(f"{url}/healthz")
    except Exception as exc:  # any failure means the same: no catalog to test
        pytest.fail(f"the catalog does not answer at {url}: {exc}; `skiff up catalog`")
    return url


@pytest.fixture(scope="module")
def people(stack: Context) -> Iterator[people_mod.People]:
    """Two teams and three users of this test module, deleted after it."""
    with people_mod.created(stack, "cp") as made:
        yield made


@pytest.fixture(scope="session")
def crowd(stack: Context, catalog_url: str) -> Iterator[World]:
    settings = stack.settings
    with people_mod.created(stack, "cat") as made:
        made.add("dave", made.team_a, also=made.team_b)

        def api(who: str) -> Api:
            return Api(catalog_url, made.token(who), made.names[who])

        service_token = keycloak.openid(settings, "airflow", keycloak.client_secret(settings, "airflow")) \
            .token(grant_type="client_credentials")["access_token"]
        admin_token = keycloak.user_token(settings, settings.platform_admin_user,
                                          settings.platform_admin_password.get_secret_value())
        yield World(
            suffix=made.suffix, team_a=made.team_a, team_b=made.team_b,
            alice=api("alice"), bob=api("bob"), carol=api("carol"), dave=api("dave"),
            admin=Api(catalog_url, admin_token, settings.platform_admin_user),
            service=Api(catalog_url, service_token, "service-account-airflow"),
            anonymous=Api(catalog_url, None),
        )
