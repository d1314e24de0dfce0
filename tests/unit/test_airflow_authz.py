"""The Airflow authorization model (what each realm role may do) and Airflow API tokens, without services.

The model is evaluated here the way Keycloak evaluates it (resource server
AFFIRMATIVE: one granting permission suffices; a permission grants when the
caller has one of its roles and its condition holds on the pushed claims), so
the role table of docs/decisions/0008 is checked as data. The integration tests
(tests/integration/test_airflow_sso.py) ask the real Keycloak the same questions.
"""

from __future__ import annotations

import base64
import json
import re
import time

import httpx
import pytest

from skiff import airflow_api
from skiff import airflow_authz as authz
from skiff.bracelet import training_trigger as tt

pytestmark = pytest.mark.unit


def allowed(role: str, resource: str, scope: str, **claims: str) -> bool:
    for grant in authz.GRANTS:
        if role not in grant.roles or scope not in grant.scopes:
            continue
        if grant.resources and resource not in grant.resources:
            continue
        if grant.when is None:
            return True
        c = authz.CONDITIONS[grant.when]
        value = claims.get(c.claim)
        # Keycloak's regex policy: Matcher.matches(); no claim, no match; NEGATIVE flips.
        matched = value is not None and re.fullmatch(c.pattern, value) is not None
        if matched != c.negate:
            return True
    return False


# Requests the auth manager makes: (resource, scope, pushed claims).
ACTIONS = {
    "trigger a run": ("Dag", "POST", {"dag_entity": "RUN", "resource_id": "skiff_smoke"}),
    "pause a DAG": ("Dag", "PUT", {"resource_id": "skiff_smoke"}),
    "delete a DAG": ("Dag", "DELETE", {"resource_id": "skiff_smoke"}),
    "delete a run": ("Dag", "DELETE", {"dag_entity": "RUN", "resource_id": "skiff_smoke"}),
    "clear a task": ("Dag", "PUT", {"dag_entity": "TASK_INSTANCE", "resource_id": "skiff_smoke"}),
    "read a DAG": ("Dag", "GET", {"resource_id": "skiff_smoke"}),
    "read its runs": ("Dag", "GET", {"dag_entity": "RUN", "resource_id": "skiff_smoke"}),
    "read task logs": ("Dag", "GET", {"dag_entity": "TASK_LOGS", "resource_id": "skiff_smoke"}),
    "read DAG code": ("Dag", "GET", {"dag_entity": "CODE", "resource_id": "skiff_smoke"}),
    "list DAGs": ("Dag", "LIST", {}),
    "edit a connection": ("Connection", "PUT", {"resource_id": "postgres_default"}),
    "read a variable": ("Variable", "GET", {"resource_id": "x"}),
    "read the config": ("Configuration", "GET", {}),
    "see import errors": ("View", "GET", {"resource_id": "IMPORT_ERRORS"}),
    "see the home page": ("View", "GET", {"resource_id": "WEBSITE"}),
    "see the Dags menu": ("Dags", "MENU", {}),
    "see the Connections menu": ("Connections", "MENU", {}),
}
READ = {"read a DAG", "read its runs", "read task logs", "list DAGs", "see the home page",
        "see the Dags menu"}
# Per the issue: viewer reads only; citizen runs and views pipelines, no code;
# data-scientist runs and edits runs, reads everything DAG-related; data-engineer
# operates (DAGs, runs, connections, variables, pools); admin everything.
TABLE = {
    "viewer": READ,
    "citizen": READ | {"trigger a run"},
    "data-scientist": READ | {"trigger a run", "pause a DAG", "delete a run", "clear a task",
                              "read DAG code", "see import errors"},
    "data-engineer": set(ACTIONS) - {"read the config"},
    "admin": set(ACTIONS),
}


@pytest.mark.parametrize("role", list(TABLE))
def test_each_role_may_do_exactly_what_the_issue_says(role: str) -> None:
    got = {name for name, (resource, scope, claims) in ACTIONS.items()
           if allowed(role, resource, scope, **claims)}
    assert got == TABLE[role]


def test_the_training_triggers_role_is_the_least_that_triggers() -> None:
    from skiff.keycloak import ROLES  # most powerful first

    resource, scope, claims = ACTIONS["trigger a run"]
    may_trigger = [r for r in ROLES if allowed(r, resource, scope, **claims)]
    assert may_trigger[-1] == authz.TRAINING_TRIGGER_ROLE


def test_a_grant_naming_something_unknown_fails_the_bootstrap() -> None:
    authz.check_model()
    typo = authz.Grant("typo", ("citizen",), ("DAG",), ("POST",))
    with pytest.raises(ValueError, match="unknown resource 'DAG'"):
        authz.check_model([typo])
    with pytest.raises(ValueError, match="unknown role 'citizens'"):
        authz.check_model([authz.Grant("typo", ("citizens",), ("Dag",), ("POST",))])


def test_every_policy_a_permission_or_aggregate_uses_is_in_the_model() -> None:
    model = authz.build()
    assert set(model.permissions) == {f"skiff-{g.name}" for g in authz.GRANTS}
    for name, rep in [*model.permissions.items(),
                      *((n, r) for n, (k, r) in model.policies.items() if k == "aggregate")]:
        missing = [p for p in rep["policies"] if p not in model.policies]
        assert missing == [], f"{name} uses {missing}"
    regex = {n: r for n, (k, r) in model.policies.items() if k == "regex"}
    assert regex and all(r["targetContextAttributes"] for r in regex.values())
    assert regex["skiff-not-dag-code"]["logic"] == "NEGATIVE"


# --- Airflow API tokens ---------------------------------------------------------------------------


def _jwt(claims: dict[str, object]) -> str:
    def part(d: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none'})}.{part(claims)}.sig"


def test_a_token_expires_when_the_keycloak_token_inside_does() -> None:
    now = time.time()
    inner = _jwt({"exp": now + 300})
    outer = _jwt({"exp": now + 86400, "access_token": inner})
    assert airflow_api.expires_at(outer) == pytest.approx(now + 300)
    assert airflow_api.expires_at(_jwt({"exp": now + 60})) == pytest.approx(now + 60)


class FakeTokens:
    """POST /auth/token: a fresh token each call, expiring ``lifetime`` seconds later."""

    def __init__(self, lifetime: float) -> None:
        self.lifetime = lifetime
        self.issued: list[str] = []

    def __call__(self, base_url: str, username: str, password: str, timeout: float = 30.0) -> str:
        tok = _jwt({"exp": time.time() + 86400, "n": len(self.issued),
                    "access_token": _jwt({"exp": time.time() + self.lifetime})})
        self.issued.append(tok)
        return tok


def _client(auth: httpx.Auth, answer: list[int]) -> tuple[httpx.Client, list[str]]:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["Authorization"].removeprefix("Bearer "))
        return httpx.Response(answer.pop(0) if answer else 200, json={})

    return httpx.Client(auth=auth, transport=httpx.MockTransport(handler), base_url="http://af"), seen


def test_token_auth_reuses_a_fresh_token_and_renews_a_nearly_expired_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = FakeTokens(lifetime=300)
    monkeypatch.setattr(airflow_api, "token", tokens)
    api, seen = _client(airflow_api.TokenAuth("http://af", "u", "p"), [])
    api.get("/a")
    api.get("/b")
    assert seen == [tokens.issued[0]] * 2
    tokens.lifetime = airflow_api.RENEW_MARGIN / 2  # the next one is nearly expired at once
    api.auth.renew()  # type: ignore[attr-defined]
    api.get("/c")
    assert len(tokens.issued) == 3 and seen[-1] == tokens.issued[2]


def test_token_auth_renews_once_on_401(monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = FakeTokens(lifetime=300)
    monkeypatch.setattr(airflow_api, "token", tokens)
    api, seen = _client(airflow_api.TokenAuth("http://af", "u", "p"), [401, 401])
    assert api.get("/a").status_code == 401  # a second 401 is the answer: no loop
    assert len(seen) == 2 and seen == tokens.issued  # the retry carried the renewed token


def test_the_trigger_retries_when_its_user_may_not_trigger(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(airflow_api, "token", FakeTokens(lifetime=300))
    af = tt.Airflow("http://af/airflow", "training-trigger", "pw")
    af._http, _ = _client(af._http.auth, [403])  # type: ignore[arg-type]
    with pytest.raises(tt.Retry, match="'training-trigger' may not trigger bracelet_training"):
        af.trigger("bracelet_training", "kafka-training-requests-0-1", {})
    af._http, _ = _client(af._http.auth, [201])  # type: ignore[arg-type]
    assert af.trigger("bracelet_training", "kafka-training-requests-0-1", {}) == "triggered"


def test_the_trigger_retries_when_keycloak_refuses_its_password(monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(*args: object, **kwargs: object) -> str:
        raise airflow_api.AirflowError("Airflow refused the credentials of 'training-trigger'")

    monkeypatch.setattr(airflow_api, "token", refused)
    af = tt.Airflow("http://af/airflow", "training-trigger", "wrong")
    af._http, _ = _client(af._http.auth, [201])  # type: ignore[arg-type]
    with pytest.raises(tt.Retry, match="refused the credentials"):
        af.trigger("bracelet_training", "kafka-training-requests-0-2", {})
