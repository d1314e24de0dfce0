"""JupyterHub on the real stack: Keycloak login through the public address, spawn, refusals, logout.

A scripted browser (httpx with a cookie jar) goes through Traefik
(``https://PUBLIC_HOST:HTTPS_PORT/jupyter/``), follows the redirects to Keycloak's
login form, submits it, and comes back to the hub, exactly the way a person's
browser does; the users are created in Keycloak for the test.
"""

from __future__ import annotations

import html
import os
import re
import secrets
import shutil
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import psutil
import pytest

from serving.catalog import stores
from skiff import keycloak
from skiff.native import launcher
from skiff.native.context import Context
from skiff.services import jupyterhub, workspace
from skiff.services import keycloak as keycloak_service

pytestmark = pytest.mark.integration

LOGIN_FORM = re.compile(r'<form[^>]*id="kc-form-login"[^>]*action="([^"]+)"', re.S)
# A spawn on two busy cores: the workspace venv imports JupyterLab, Elyra, MLflow.
SPAWN_TIMEOUT = 180.0


@pytest.fixture(scope="module")
def hub(request: pytest.FixtureRequest, ctx: Context) -> Context:
    """The running hub and Keycloak when they are healthy, else the whole stack."""
    if all(launcher.probe(ctx, svc) is None for svc in (keycloak_service.SERVICE, jupyterhub.SERVICE)):
        return ctx
    return request.getfixturevalue("stack")


@pytest.fixture(scope="module")
def public(hub: Context) -> str:
    url = f"{hub.settings.public_url}/jupyter/"
    try:
        httpx.get(f"{url}hub/health", verify=trust(hub), timeout=5).raise_for_status()
    except httpx.HTTPError as exc:
        pytest.fail(f"JupyterHub does not answer through Traefik at {url}: {exc}", pytrace=False)
    return url


def trust(ctx: Context) -> ssl.SSLContext:
    """Trusts the CA that signed the certificate Traefik serves (certs/ca.crt from skiff init)."""
    cert, _ = ctx.settings.tls_files(ctx.root)
    ca = cert.parent / "ca.crt"
    return ssl.create_default_context(cafile=str(ca if ca.is_file() else cert))


@dataclass
class Account:
    name: str
    password: str


def make_user(ctx: Context, role: str) -> Iterator[Account]:
    name = f"jh-{role.split('-')[-1]}-{secrets.token_hex(3)}"
    password = keycloak.create_user(ctx.settings, name, role=role, team="jupyterhub-tests")
    yield Account(name, password)
    admin = keycloak.admin_client(ctx.settings)
    user_id = admin.get_user_id(name)
    if user_id:
        admin.delete_user(user_id)
    # Natively the test user's home is a folder of the hub's data.
    shutil.rmtree(ctx.data_dir(jupyterhub.NAME) / "users" / name, ignore_errors=True)


@pytest.fixture(scope="module")
def scientist(hub: Context) -> Iterator[Account]:
    yield from make_user(hub, "data-scientist")


@pytest.fixture(scope="module")
def viewer(hub: Context) -> Iterator[Account]:
    yield from make_user(hub, "viewer")


@pytest.fixture
def browser(hub: Context) -> Iterator[httpx.Client]:
    with httpx.Client(verify=trust(hub), follow_redirects=True, timeout=60) as client:
        yield client


def log_in(browser: httpx.Client, url: str, account: Account) -> httpx.Response:
    """Open ``url``, fill Keycloak's login form, and return where the redirects end."""
    page = browser.get(url)
    form = LOGIN_FORM.search(page.text)
    assert form, f"{url} did not lead to Keycloak's login form but to {page.url} ({page.status_code})"
    assert "/auth/realms/skiff/" in str(page.url), page.url
    answer = browser.post(html.unescape(form.group(1)),
                          data={"username": account.name, "password": account.password,
                                "credentialId": ""})
    assert not LOGIN_FORM.search(answer.text), f"Keycloak refused {account.name}'s password"
    assert "kc-update-profile-form" not in answer.text, \
        "Keycloak asks new users to complete their profile: the realm's user profile requires more"
    return answer


def api(browser: httpx.Client, public: str, path: str, token: str, method: str = "GET") -> httpx.Response:
    return browser.request(method, f"{public}hub/api/{path}",
                           headers={"Authorization": f"token {token}"})


def hub_token(browser: httpx.Client, public: str, user: str) -> str:
    """An API token of the logged-in user, asked for with the session cookie (as the UI does)."""
    xsrf = browser.cookies.get("_xsrf", path="/jupyter/hub/")
    assert xsrf, "the hub set no _xsrf cookie"
    answer = browser.post(f"{public}hub/api/users/{user}/tokens", json={"note": "integration test"},
                          headers={"X-XSRFToken": xsrf})
    assert answer.status_code == 201, answer.text
    return answer.json()["token"]


def wait_for_server(browser: httpx.Client, public: str, user: str, token: str) -> dict:
    deadline = time.monotonic() + SPAWN_TIMEOUT
    model: dict = {}
    while time.monotonic() < deadline:
        model = api(browser, public, f"users/{user}", token).json()
        server = model.get("servers", {}).get("")
        if server and server.get("ready"):
            return server
        if not server or not server.get("pending"):
            # Not spawning (yet): ask for it, as the hub's home page button does.
            answer = api(browser, public, f"users/{user}/server", token, method="POST")
            assert answer.status_code in (201, 202, 400), answer.text
        time.sleep(1)
    raise AssertionError(f"{user}'s server not ready after {SPAWN_TIMEOUT:.0f}s: {model}")


def server_environment(user: str) -> dict[str, str]:
    """The environment of ``user``'s server process (native mode: a local process)."""
    for proc in psutil.process_iter():
        try:
            env = proc.environ()
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        if env.get("JUPYTERHUB_USER") == user and "JUPYTERHUB_API_TOKEN" in env:
            return env
    raise AssertionError(f"no process of {user}'s server found")


def test_health_is_open(public: str, browser: httpx.Client) -> None:
    answer = browser.get(f"{public}hub/health")
    assert answer.status_code == 200


def test_without_a_session_the_hub_sends_you_to_keycloak(hub: Context, public: str) -> None:
    with httpx.Client(verify=trust(hub), follow_redirects=False, timeout=30) as client:
        first = client.get(f"{public}hub/")
        assert first.status_code == 302
        assert first.headers["location"].startswith("/jupyter/hub/login")
        # auto_login: the hub's login page is Keycloak's, at the public address.
        login = client.get(f"{public}hub/oauth_login")
        assert login.status_code == 302
        target = httpx.URL(login.headers["location"])
        assert str(target).startswith(f"{hub.settings.keycloak_issuer}/protocol/openid-connect/auth")
        assert target.params["client_id"] == "jupyterhub"
        assert target.params["redirect_uri"] == f"{public}hub/oauth_callback"
    with httpx.Client(verify=trust(hub), timeout=30) as client:
        assert client.get(f"{public}hub/api/user").status_code == 403


def test_a_data_scientist_logs_in_and_gets_a_jupyterlab_server(
        hub: Context, public: str, browser: httpx.Client, scientist: Account) -> None:
    landed = log_in(browser, f"{public}hub/home", scientist)
    assert landed.status_code == 200
    assert str(landed.url).startswith(f"{public}hub/"), landed.url
    token = hub_token(browser, public, scientist.name)

    me = api(browser, public, "user", token).json()
    assert me["name"] == scientist.name
    assert me["admin"] is False
    assert "data-scientist" in me["groups"]

    server = wait_for_server(browser, public, scientist.name, token)
    assert server["url"] == f"/jupyter/user/{scientist.name}/"
    status = browser.get(f"{public}user/{scientist.name}/api/status",
                         headers={"Authorization": f"token {token}"})
    assert status.status_code == 200, status.text
    assert "started" in status.json()
    # The home starts from user-workspace/, with the bracelet notebook.
    listing = browser.get(f"{public}user/{scientist.name}/api/contents/notebooks",
                          headers={"Authorization": f"token {token}"})
    assert listing.status_code == 200, listing.text
    assert "bracelet_train.ipynb" in {item["name"] for item in listing.json()["content"]}
    if os.environ.get("SKIFF_TEST_MODE") != "compose":
        # Runs are attributed to the user; the platform's addresses are set.
        env = server_environment(scientist.name)
        assert env["SKIFF_USER"] == env["LOGNAME"] == env["USER"] == scientist.name
        expected = workspace.spawn_env(hub)
        assert {k: env.get(k) for k in expected} == expected
        # S3 keys of the person's own account, never the platform's (the hub asked the catalog).
        assert env["S3_ACCESS_KEY"] == stores.access_key(scientist.name)
        assert hub.settings.s3_secret_key.get_secret_value() not in env.values()
    # The browser itself (cookie, no token) reaches JupyterLab through the user's server.
    lab = browser.get(f"{public}user/{scientist.name}/lab")
    assert lab.status_code == 200 and str(lab.url).endswith(f"/user/{scientist.name}/lab"), lab.url

    stopped = api(browser, public, f"users/{scientist.name}/server", token, method="DELETE")
    assert stopped.status_code in (202, 204), stopped.text


def test_a_viewer_is_refused_with_a_reason(public: str, browser: httpx.Client, viewer: Account) -> None:
    refused = log_in(browser, f"{public}hub/home", viewer)
    assert refused.status_code == 403
    assert "no notebook workspace" in refused.text
    assert "data-scientist" in refused.text
    assert browser.get(f"{public}hub/api/user").status_code == 403


def test_the_platform_admin_is_a_hub_admin(hub: Context, public: str, browser: httpx.Client) -> None:
    s = hub.settings
    admin = Account(s.platform_admin_user, s.platform_admin_password.get_secret_value())
    log_in(browser, f"{public}hub/home", admin)
    token = hub_token(browser, public, admin.name)
    me = api(browser, public, "user", token).json()
    assert me["admin"] is True
    assert "admin" in me["groups"]


def test_logging_out_of_the_hub_ends_the_keycloak_session(
        hub: Context, public: str, browser: httpx.Client, scientist: Account) -> None:
    log_in(browser, f"{public}hub/home", scientist)
    out = browser.get(f"{public}hub/logout", follow_redirects=False)
    assert out.status_code == 302
    end_session = httpx.URL(out.headers["location"])
    assert str(end_session).startswith(f"{hub.settings.keycloak_issuer}/protocol/openid-connect/logout")
    assert end_session.params.get("id_token_hint"), "logout does not name the session's ID token"
    after = browser.get(str(end_session))
    assert str(after.url).startswith(hub.settings.public_url), after.url
    # Back at the hub: Keycloak asks for the password again (no session left to reuse).
    again = browser.get(f"{public}hub/home")
    assert LOGIN_FORM.search(again.text), f"still logged in after logout: {again.url}"


def test_a_keycloak_logout_ends_hub_access_within_the_refresh_age(
        hub: Context, public: str, browser: httpx.Client, scientist: Account) -> None:
    log_in(browser, f"{public}hub/home", scientist)
    token = hub_token(browser, public, scientist.name)
    assert api(browser, public, "user", token).status_code == 200

    admin = keycloak.admin_client(hub.settings)
    admin.user_logout(admin.get_user_id(scientist.name))
    refresh_age = 30  # JUPYTERHUB_AUTH_REFRESH_AGE's default in jupyterhub_config.py
    deadline = time.monotonic() + refresh_age + 15
    while time.monotonic() < deadline:
        if api(browser, public, "user", token).status_code == 403:
            break
        time.sleep(1)
    else:
        raise AssertionError(f"the hub still accepts {scientist.name}'s token {refresh_age + 15}s "
                             "after Keycloak ended the session")
    # The browser's session cookie is refused too: back to Keycloak's login form.
    assert LOGIN_FORM.search(browser.get(f"{public}hub/home").text)
