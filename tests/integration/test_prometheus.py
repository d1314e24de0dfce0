"""Prometheus on the real stack: it scrapes the model server and the ingest's lag; Traefik guards it.

Prometheus is asked through its HTTP API at its internal address (under its route
prefix /prometheus), then through Traefik with Keycloak tokens: admins and data
engineers get in, other roles get 403, an anonymous API client 401. Waits poll
with a deadline (a scrape every 15 s), never a fixed sleep.
"""

from __future__ import annotations

import ssl
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from kafka import KafkaConsumer

from skiff import keycloak
from skiff.bracelet.events import TOPIC
from skiff.native.context import Context
from skiff.services import REGISTRY, prometheus
from skiff.services import kafka as kafka_service
from tests.polling import eventually

pytestmark = pytest.mark.integration



@pytest.fixture(scope="module")
def api(stack: Context) -> Iterator[httpx.Client]:
    for name in ("prometheus", "model-server", "ingest"):
        if name not in REGISTRY:
            pytest.skip(f"{name} is not in skiff.services.REGISTRY yet")
    with httpx.Client(base_url=f"{prometheus.url(stack)}/api/v1", timeout=10) as client:
        yield client


def targets(api: httpx.Client) -> dict[str, dict[str, Any]]:
    resp = api.get("/targets", params={"state": "active"})
    resp.raise_for_status()
    return {t["labels"]["job"]: t for t in resp.json()["data"]["activeTargets"]}


def query(api: httpx.Client, promql: str) -> list[dict[str, Any]]:
    resp = api.get("/query", params={"query": promql})
    resp.raise_for_status()
    body = resp.json()
    assert body["status"] == "success", body
    return body["data"]["result"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("job", ["model-server", "ingest", "prometheus"])
def test_the_target_is_scraped_and_up(api: httpx.Client, job: str) -> None:
    def up() -> dict[str, Any] | None:
        target = targets(api).get(job)
        assert target is not None, f"no scrape job {job!r} (compose/prometheus/prometheus.yml)"
        return target if target["health"] == "up" else None

    try:
        eventually(up, f"Prometheus scrapes {job} successfully")
    except AssertionError:
        target = targets(api)[job]
        pytest.fail(f"{job} at {target['scrapeUrl']}: {target['health']}: {target['lastError']}")
    # And the sample Prometheus records for it says so.
    assert [s["value"][1] for s in query(api, f'up{{job="{job}"}}')] == ["1"]


def test_the_model_servers_request_metrics_are_collected(api: httpx.Client, stack: Context) -> None:
    # /healthz is counted like any request (serving/model_server/metrics.py).
    httpx.get(f"{REGISTRY['model-server'].url(stack)}/healthz", timeout=10).raise_for_status()
    promql = 'skiff_model_server_requests_total{job="model-server", endpoint="/healthz"}'
    series = eventually(lambda: query(api, promql), promql)
    assert sum(float(s["value"][1]) for s in series) >= 1


def test_the_ingest_lag_has_a_series_per_partition(api: httpx.Client, stack: Context) -> None:
    consumer = KafkaConsumer(bootstrap_servers=kafka_service.bootstrap_servers(stack))
    try:
        partitions = consumer.partitions_for_topic(TOPIC)
    finally:
        consumer.close()
    assert partitions, f"topic {TOPIC} has no partitions"
    promql = f'skiff_ingest_lag_messages{{job="ingest", topic="{TOPIC}"}}'

    def all_partitions() -> list[dict[str, Any]] | None:
        found = query(api, promql)
        return found if {int(s["metric"]["partition"]) for s in found} == set(partitions) else None

    series = eventually(all_partitions, f"{promql} for partitions {sorted(partitions)}")
    assert all(float(s["value"][1]) >= 0 for s in series)


# --- through Traefik ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def trust(stack: Context) -> ssl.SSLContext:
    if "traefik" not in REGISTRY:
        pytest.skip("traefik is not in skiff.services.REGISTRY")
    return ssl.create_default_context(cafile=str(stack.root / "certs" / "ca.crt"))


@pytest.fixture(scope="module")
def tokens(stack: Context) -> Iterator[dict[str, str]]:
    """A fresh realm user per role: role -> an access token (client mlflow, as API clients hold)."""
    admin = keycloak.admin_client(stack.settings)
    suffix = uuid.uuid4().hex[:8]
    made: dict[str, str] = {}
    try:
        out = {}
        for role in ("admin", "data-engineer", "data-scientist"):
            name = f"prom-{role}-{suffix}"
            password = keycloak.create_user(stack.settings, name, role, "prometheus-tests", admin=admin)
            made[role] = name
            out[role] = keycloak.user_token(stack.settings, name, password, client_id="mlflow")
        yield out
    finally:
        for name in made.values():
            found = keycloak.find_user(admin, name)
            if found:
                admin.delete_user(found["id"])


def public(stack: Context, trust: ssl.SSLContext, path: str, token: str | None) -> httpx.Response:
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.get(f"{stack.settings.public_url}{path}", headers=headers, verify=trust, timeout=30,
                     follow_redirects=False)


@pytest.mark.parametrize("role", ["admin", "data-engineer"])
def test_operators_reach_prometheus_through_traefik(
        api: httpx.Client, stack: Context, trust: ssl.SSLContext, tokens: dict[str, str], role: str) -> None:
    resp = public(stack, trust, "/prometheus/api/v1/query?query=up", tokens[role])
    assert resp.status_code == 200, resp.text[:500]
    assert {s["metric"]["job"] for s in resp.json()["data"]["result"]} >= {"model-server", "ingest"}


def test_other_roles_and_anonymous_clients_are_kept_out(
        api: httpx.Client, stack: Context, trust: ssl.SSLContext, tokens: dict[str, str]) -> None:
    path = "/prometheus/api/v1/query?query=up"
    assert public(stack, trust, path, tokens["data-scientist"]).status_code == 403
    assert public(stack, trust, path, None).status_code == 401
