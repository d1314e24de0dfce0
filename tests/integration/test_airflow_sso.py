"""Airflow behind Keycloak: logins, what each realm role may do, and new pipelines showing up.

One user per realm role is created for the module (skiff.keycloak.create_user)
and deleted afterwards. The role table is docs/decisions/0008-airflow-keycloak.md's.
"""

from __future__ import annotations

import html
import json
import re
import secrets
import ssl
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from skiff import airflow_api, airflow_authz
from skiff import keycloak as kc
from skiff.native.context import Context
from skiff.services import airflow

pytestmark = pytest.mark.integration

DAG = "skiff_smoke"


@pytest.fixture(scope="module")
def users(stack: Context) -> Iterator[dict[str, tuple[str, str]]]:
    """role -> (user name, password), one fresh user per realm role."""
    s = stack.settings
    admin = kc.admin_client(s)
    tag = secrets.token_hex(3)
    made: dict[str, tuple[str, str]] = {}
    try:
        for role in kc.ROLES:
            name = f"af-{role}-{tag}"
            made[role] = (name, kc.create_user(s, name, role, team=None, admin=admin))
        yield made
    finally:
        for name, _ in made.values():
            user = kc.find_user(admin, name)
            if user:
                admin.delete_user(user["id"])


def api_as(stack: Context, users: dict[str, tuple[str, str]], role: str) -> httpx.Client:
    name, password = users[role]
    return airflow_api.client(stack, name, password)


@pytest.fixture(scope="module")
def smoke(stack: Context) -> None:
    """The DAG the role tests act on, parsed and not paused."""
    with airflow_api.client(stack) as api:
        if airflow_api.wait_for_dag(api, DAG)["is_paused"]:
            api.patch(f"/dags/{DAG}", json={"is_paused": False}).raise_for_status()


def test_requests_without_a_token_get_401(stack: Context) -> None:
    base = f"{airflow.base_url(stack)}/api/v2"
    answers = {
        "list DAGs": httpx.get(f"{base}/dags", timeout=30).status_code,
        "trigger": httpx.post(f"{base}/dags/{DAG}/dagRuns", json={"logical_date": None},
                              timeout=30).status_code,
        "source": httpx.get(f"{base}/dagSources/{DAG}", timeout=30).status_code,
        "garbage token": httpx.get(f"{base}/dags", headers={"Authorization": "Bearer x.y.z"},
                                   timeout=30).status_code,
    }
    assert answers == {"list DAGs": 401, "trigger": 401, "source": 401, "garbage token": 403}
    # Health stays open: probes and Traefik's checks need no login.
    assert httpx.get(f"{base}/monitor/health", timeout=30).status_code == 200


def test_a_wrong_password_gets_no_token(stack: Context, users: dict[str, tuple[str, str]]) -> None:
    name, _ = users["viewer"]
    with pytest.raises(airflow_api.AirflowError, match=f"refused the credentials of '{name}'"):
        airflow_api.token(airflow.base_url(stack), name, "not-the-password")


@pytest.mark.parametrize("role", kc.ROLES)
def test_every_role_logs_in_to_the_api_and_sees_the_dags(
        stack: Context, users: dict[str, tuple[str, str]], smoke: None, role: str) -> None:
    with api_as(stack, users, role) as api:
        me = api.get(f"{airflow.base_url(stack)}/ui/auth/me")
        dags = api.get("/dags")
    assert me.status_code == 200 and me.json()["username"] == users[role][0]
    assert dags.status_code == 200, dags.text
    assert DAG in {d["dag_id"] for d in dags.json()["dags"]}


def _trigger(api: httpx.Client) -> httpx.Response:
    return api.post(f"/dags/{DAG}/dagRuns", json={"logical_date": None, "conf": {}})


def test_a_viewer_reads_runs_but_cannot_trigger(
        stack: Context, users: dict[str, tuple[str, str]], smoke: None) -> None:
    with api_as(stack, users, "viewer") as api:
        assert api.get(f"/dags/{DAG}/dagRuns").status_code == 200
        assert _trigger(api).status_code == 403
        assert api.get(f"/dagSources/{DAG}").status_code == 403


def test_a_citizen_triggers_but_cannot_pause_read_code_or_touch_connections(
        stack: Context, users: dict[str, tuple[str, str]], smoke: None) -> None:
    with api_as(stack, users, "citizen") as api:
        run = _trigger(api)
        assert run.status_code == 200, run.text
        assert api.get(f"/dags/{DAG}/dagRuns/{run.json()['dag_run_id']}").status_code == 200
        assert api.patch(f"/dags/{DAG}", json={"is_paused": True}).status_code == 403
        assert api.delete(f"/dags/{DAG}").status_code == 403
        assert api.get(f"/dagSources/{DAG}").status_code == 403
        assert api.get("/connections").status_code == 403
        assert api.get("/variables").status_code == 403
        assert not api.get(f"/dags/{DAG}").json()["is_paused"]
        menus = api.get(f"{airflow.base_url(stack)}/ui/auth/menus").json()["authorized_menu_items"]
    assert set(menus) == {"Dags", "Assets", "Docs"}


def test_a_data_scientist_triggers_pauses_and_reads_code_but_operates_nothing(
        stack: Context, users: dict[str, tuple[str, str]], smoke: None) -> None:
    with api_as(stack, users, "data-scientist") as api:
        assert _trigger(api).status_code == 200
        try:
            paused = api.patch(f"/dags/{DAG}", json={"is_paused": True})
            assert paused.status_code == 200 and paused.json()["is_paused"], paused.text
        finally:
            assert api.patch(f"/dags/{DAG}", json={"is_paused": False}).status_code == 200
        source = api.get(f"/dagSources/{DAG}")
        assert source.status_code == 200 and "skiff_smoke" in source.json()["content"]
        assert api.get("/connections").status_code == 403
        assert api.delete(f"/dags/{DAG}").status_code == 403


def test_a_data_engineer_manages_connections_and_variables(
        stack: Context, users: dict[str, tuple[str, str]]) -> None:
    key = f"skiff_sso_test_{secrets.token_hex(3)}"
    with api_as(stack, users, "data-engineer") as api:
        assert api.get("/connections").status_code == 200
        created = api.post("/variables", json={"key": key, "value": "1"})
        assert created.status_code == 201, created.text
        assert api.delete(f"/variables/{key}").status_code == 204
    with api_as(stack, users, "data-scientist") as api:
        assert api.post("/variables", json={"key": key, "value": "1"}).status_code == 403


def test_the_browser_login_goes_through_keycloak_and_ends_with_its_session(
        stack: Context, users: dict[str, tuple[str, str]]) -> None:
    """The authorization-code flow a browser makes, through Traefik, without a browser.

    The login redirect names the public Keycloak; the callback's back-channel
    exchange uses the internal one; the cookies then work until Keycloak's
    session ends.
    """
    s = stack.settings
    trust = ssl.create_default_context(cafile=str(stack.root / "certs" / "ca.crt"))
    public = airflow.public_url(stack)
    try:
        httpx.get(f"{public}/api/v2/monitor/health", verify=trust, timeout=10).raise_for_status()
    except (httpx.HTTPError, OSError) as exc:
        pytest.skip(f"Traefik does not serve {public} ({exc}): `skiff up traefik`")
    name, password = users["citizen"]
    with httpx.Client(verify=trust, timeout=30) as web:
        start = web.get(f"{public}/auth/login")
        assert start.status_code == 307
        assert start.headers["location"].startswith(f"{s.keycloak_issuer}/protocol/openid-connect/auth?")
        assert f"redirect_uri={public}/auth/login_callback" in start.headers["location"]
        page = web.get(start.headers["location"])
        form = re.search(r'<form[^>]*id="kc-form-login"[^>]*action="([^"]+)"', page.text)
        assert form, page.text[:500]
        back = web.post(html.unescape(form.group(1)),
                        data={"username": name, "password": password, "credentialId": ""})
        assert back.status_code == 302
        assert back.headers["location"].startswith(f"{public}/auth/login_callback?")
        landed = web.get(back.headers["location"])
        assert landed.status_code == 303 and landed.headers["location"] == public
        assert web.get(f"{public}/api/v2/dags").status_code == 200
        assert web.get(f"{public}/api/v2/dagSources/{DAG}").status_code == 403
        # Logging out of Keycloak (anywhere) ends the Airflow session too.
        admin = kc.admin_client(s)
        admin.user_logout(kc.find_user(admin, name)["id"])
        assert web.get(f"{public}/api/v2/dags").status_code in (401, 403)


def test_the_authorization_model_names_what_the_installed_provider_has(stack: Context) -> None:
    script = textwrap.dedent("""
        import json
        from airflow.api_fastapi.auth.managers.base_auth_manager import ResourceMethod
        from airflow.api_fastapi.common.types import MenuItem
        from airflow.providers.keycloak.auth_manager.cli.commands import _get_scopes_to_create
        from airflow.providers.keycloak.auth_manager.resources import KeycloakResource
        print(json.dumps({"scopes": [s["name"] for s in _get_scopes_to_create()],
                          "resources": [r.value for r in KeycloakResource],
                          "menus": [m.value for m in MenuItem]}))
    """)
    python = airflow.venv(stack) / "bin" / "python"
    done = subprocess.run([str(python), "-c", script], capture_output=True, text=True, check=True,
                          env=airflow.airflow_env(stack), timeout=120)
    provider = json.loads(done.stdout.strip().splitlines()[-1])
    assert sorted(provider["scopes"]) == sorted(airflow_authz.SCOPES)
    assert sorted(provider["resources"]) == sorted(airflow_authz.RESOURCES)
    assert sorted(provider["menus"]) == sorted(airflow_authz.MENU_ITEMS)


def test_the_bootstrap_converges_and_changes_nothing_the_second_time(stack: Context) -> None:
    admin = kc.admin_client(stack.settings)
    airflow_authz.converge(admin)
    assert airflow_authz.converge(admin).summary() == "up to date"


def test_a_new_pipeline_dag_shows_up_within_seconds(stack: Context) -> None:
    """What the Elyra runtime does: a DAG file appears under dags/pipelines/."""
    dag_id = f"skiff_sso_probe_{secrets.token_hex(3)}"
    path: Path = airflow.dags_folder(stack) / airflow.PIPELINES / f"{dag_id}.py"
    path.write_text(textwrap.dedent(f"""
        from airflow.sdk import dag, task

        @dag(dag_id="{dag_id}", schedule=None, tags=["test"])
        def probe():
            @task
            def hello():
                return "ok"
            hello()

        probe()
    """))
    t0 = time.monotonic()
    with airflow_api.client(stack) as api:
        try:
            airflow_api.wait_for_dag(api, dag_id, timeout=60)
            seconds = time.monotonic() - t0
            print(f"{dag_id} in Airflow {seconds:.1f}s after its file was written")
            assert seconds < 20
        finally:
            path.unlink(missing_ok=True)
            # Gone from the folder, then from the database (deleting first would re-parse it).
            deadline = time.monotonic() + 60
            while api.get(f"/dags/{dag_id}").json().get("is_stale") is False:
                if time.monotonic() > deadline:
                    break
                time.sleep(1)
            api.delete(f"/dags/{dag_id}")
