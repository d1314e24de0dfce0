"""Keycloak on the running stack: the imported realm, its tokens, and the model API's door.

Tokens are fetched at the internal address and must still name the public
issuer; the model server must take the devices' tokens and refuse every other
kind with a 401 that says why. Only Keycloak (and the model server for the
model-API tests) is started if not running; nothing is stopped.
"""

from __future__ import annotations

import os
import ssl
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from keycloak import KeycloakAdmin, KeycloakOpenID

from skiff import keycloak as kc
from skiff.native import launcher
from skiff.native.context import Context
from skiff.services import keycloak as kc_service
from skiff.services import model_server

pytestmark = pytest.mark.integration


def _running(ctx: Context, request: pytest.FixtureRequest, *services: str) -> Context:
    if os.environ.get("SKIFF_TEST_MODE") == "compose":
        return request.getfixturevalue("stack")
    health = {r.service: r.health for r in launcher.status(ctx)}
    if any(health.get(s) != "healthy" for s in services):
        try:
            launcher.up(ctx, list(services))
        except launcher.ServiceError as exc:
            pytest.fail(f"{exc}\n{exc.log_tail}", pytrace=False)
    return ctx


@pytest.fixture(scope="module")
def sso(ctx: Context, request: pytest.FixtureRequest) -> Context:
    return _running(ctx, request, "keycloak")


@pytest.fixture(scope="module")
def admin(sso: Context) -> KeycloakAdmin:
    return kc.admin_client(sso.settings)


@pytest.fixture(scope="module")
def api(sso: Context, request: pytest.FixtureRequest) -> Iterator[httpx.Client]:
    _running(sso, request, "model-server")
    with httpx.Client(base_url=model_server.url(sso), timeout=30) as client:
        yield client


def claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def test_discovery_names_the_public_issuer_and_internal_back_channel(sso: Context) -> None:
    s = sso.settings
    doc = httpx.get(f"{s.keycloak_internal_url}/realms/{s.keycloak_realm}/.well-known/"
                    "openid-configuration", timeout=10).json()
    assert doc["issuer"] == s.keycloak_issuer
    # Browsers are sent to the public address; services call the internal one.
    assert doc["authorization_endpoint"].startswith(f"{s.public_url}/auth/")
    assert doc["token_endpoint"].startswith(f"{s.keycloak_internal_url}/")
    assert doc["jwks_uri"] == kc_service.jwks_url(sso)


def test_the_platform_roles_and_clients_were_imported(admin: KeycloakAdmin, sso: Context) -> None:
    roles = {r["name"] for r in admin.get_realm_roles()}
    assert set(kc.ROLES) <= roles
    clients = {c["clientId"]: c for c in admin.get_clients()}
    for client_id in ("portal", "jupyterhub", "airflow", "mlflow", "model-api",
                      sso.settings.device_client_id):
        assert client_id in clients
    assert clients["model-api"]["bearerOnly"]


def test_client_secrets_are_those_of_env(admin: KeycloakAdmin, sso: Context) -> None:
    for client_id, secret in kc_service.client_secrets(sso).items():
        internal = admin.get_client_id(client_id)
        assert admin.get_client_secrets(internal)["value"] == secret, client_id


def test_a_device_token_fetched_inside_names_the_public_issuer(sso: Context) -> None:
    s = sso.settings
    token = claims(kc.device_token(s))
    assert token["iss"] == s.keycloak_issuer
    assert kc_service.MODEL_API_AUDIENCE in token["aud"]
    assert token["azp"] == s.device_client_id
    # Cached: asking again within its lifetime gives the same token.
    assert kc.device_token(s) == kc.device_token(s)


def test_the_platform_admin_exists_and_can_sign_in(admin: KeycloakAdmin, sso: Context) -> None:
    s = sso.settings
    user = kc.find_user(admin, s.platform_admin_user)
    assert user is not None
    assert "admin" in {r["name"] for r in admin.get_realm_roles_of_user(user["id"])}
    token = claims(kc.user_token(s, s.platform_admin_user, s.platform_admin_password.get_secret_value()))
    assert "admin" in token["realm_access"]["roles"]
    assert token["iss"] == s.keycloak_issuer


@pytest.fixture
def member(admin: KeycloakAdmin, sso: Context) -> Iterator[tuple[str, str, str]]:
    """A data scientist of a team of their own, removed afterwards."""
    name, team = f"kc-test-{uuid.uuid4().hex[:8]}", f"team-{uuid.uuid4().hex[:6]}"
    password = kc.create_user(sso.settings, name, "data-scientist", team, admin=admin)
    yield name, team, password
    user = kc.find_user(admin, name)
    if user:
        admin.delete_user(user["id"])
    admin.delete_group(admin.get_group_by_path(f"/{team}")["id"])


def test_tokens_carry_the_role_and_the_team_by_name(sso: Context, member: tuple[str, str, str]) -> None:
    name, team, password = member
    token = claims(kc.user_token(sso.settings, name, password))
    assert "data-scientist" in token["realm_access"]["roles"]
    assert "admin" not in token["realm_access"]["roles"]
    assert token["groups"] == [team]
    assert token["preferred_username"] == name


def test_creating_an_existing_user_is_refused(admin: KeycloakAdmin, sso: Context,
                                              member: tuple[str, str, str]) -> None:
    with pytest.raises(kc.UserError, match="already exists"):
        kc.create_user(sso.settings, member[0], "viewer", member[1], admin=admin)


# --- The model API: accepts device tokens, refuses the rest -------------------------


def refusal(resp: httpx.Response) -> str:
    assert resp.status_code == 401, resp.text
    assert resp.headers["WWW-Authenticate"].startswith("Bearer ")
    return str(resp.json()["error"]["code"])


def test_a_device_token_is_accepted(api: httpx.Client, sso: Context) -> None:
    resp = api.get("/openapi.json", headers={"Authorization": f"Bearer {kc.device_token(sso.settings)}"})
    assert resp.status_code == 200, resp.text


def test_device_auth_signs_requests(api: httpx.Client, sso: Context) -> None:
    resp = api.get("/openapi.json", auth=kc.DeviceAuth(sso.settings))
    assert resp.status_code == 200, resp.text


@pytest.mark.parametrize("path", ["/v1/predict", "/v1/feedback", "/openapi.json"])
def test_no_token_no_answer(api: httpx.Client, path: str) -> None:
    resp = api.post(path, json={}) if path.startswith("/v1") else api.get(path)
    assert refusal(resp) == "missing_token"


@pytest.mark.parametrize("path", ["/healthz", "/metrics"])
def test_health_and_metrics_stay_open(api: httpx.Client, path: str) -> None:
    assert api.get(path).status_code == 200


def test_a_user_token_without_the_model_api_audience_is_refused(api: httpx.Client, sso: Context) -> None:
    s = sso.settings
    token = kc.user_token(s, s.platform_admin_user, s.platform_admin_password.get_secret_value())
    assert kc_service.MODEL_API_AUDIENCE not in claims(token)["aud"]
    resp = api.get("/openapi.json", headers={"Authorization": f"Bearer {token}"})
    assert refusal(resp) == "wrong_audience"


def test_a_token_of_another_realm_is_refused(api: httpx.Client, sso: Context) -> None:
    s = sso.settings
    master = KeycloakOpenID(server_url=s.keycloak_internal_url + "/", realm_name="master",
                               client_id="admin-cli")
    token = master.token(s.keycloak_admin_user, s.keycloak_admin_password.get_secret_value())
    assert claims(token["access_token"])["iss"].endswith("/realms/master")
    resp = api.get("/openapi.json", headers={"Authorization": f"Bearer {token['access_token']}"})
    assert refusal(resp) == "wrong_issuer"


def test_a_device_token_re_signed_with_another_key_is_refused(api: httpx.Client, sso: Context) -> None:
    real = kc.device_token(sso.settings)
    header = jwt.get_unverified_header(real)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(claims(real), other, algorithm="RS256", headers={"kid": header["kid"]})
    resp = api.get("/openapi.json", headers={"Authorization": f"Bearer {forged}"})
    assert refusal(resp) == "bad_signature"


@pytest.fixture
def short_lived_client(admin: KeycloakAdmin) -> Iterator[KeycloakOpenID]:
    """A device-like client whose tokens live one second, removed afterwards."""
    client_id, secret = f"kc-test-expiry-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    internal = admin.create_client({
        "clientId": client_id, "secret": secret, "publicClient": False,
        "serviceAccountsEnabled": True, "standardFlowEnabled": False,
        "attributes": {"access.token.lifespan": "1"},
        "protocolMappers": [{
            "name": "audience-model-api", "protocol": "openid-connect",
            "protocolMapper": "oidc-audience-mapper",
            "config": {"included.client.audience": kc_service.MODEL_API_AUDIENCE,
                       "access.token.claim": "true"}}],
    })
    yield KeycloakOpenID(server_url=admin.connection.server_url,
                         realm_name=admin.connection.realm_name,
                         client_id=client_id, client_secret_key=secret)
    admin.delete_client(internal)


def test_an_expired_keycloak_token_is_refused(api: httpx.Client,
                                               short_lived_client: KeycloakOpenID) -> None:
    token = short_lived_client.token(grant_type="client_credentials")["access_token"]
    body = claims(token)
    assert body["exp"] - body["iat"] == 1 and kc_service.MODEL_API_AUDIENCE in body["aud"]
    # The server tolerates a few seconds of clock skew (auth.LEEWAY): ask until it refuses.
    deadline = time.monotonic() + 30
    codes = []
    while time.monotonic() < deadline:
        resp = api.get("/openapi.json", headers={"Authorization": f"Bearer {token}"})
        if resp.status_code == 401:
            break
        codes.append(resp.status_code)
        time.sleep(0.5)
    assert refusal(resp) == "token_expired"
    # Before it expired, the same token was good: the refusal is about time alone.
    assert codes and set(codes) == {200}


def test_a_token_fetched_through_the_public_address_is_accepted_inside(api: httpx.Client,
                                                                       sso: Context) -> None:
    """Outside and inside agree: the same issuer whichever door the token came through."""
    s = sso.settings
    health = {r.service: r.health for r in launcher.status(sso)}
    ca = sso.root / "certs" / "ca.crt"
    if health.get("traefik") != "healthy" or not ca.is_file():
        pytest.skip("Traefik (the public address) is not running")
    resp = httpx.post(f"{s.keycloak_issuer}/protocol/openid-connect/token", timeout=30,
                      verify=ssl.create_default_context(cafile=str(ca)),
                      data={"grant_type": "client_credentials", "client_id": s.device_client_id,
                            "client_secret": s.device_client_secret.get_secret_value()})
    assert resp.status_code == 200, resp.text
    token = resp.json()["access_token"]
    assert claims(token)["iss"] == s.keycloak_issuer
    assert api.get("/openapi.json", headers={"Authorization": f"Bearer {token}"}).status_code == 200


# --- one device's own credentials, and taking them away --------------------------------

def test_one_device_is_cut_off_and_the_fleet_is_not(api: httpx.Client, sso: Context,
                                                   admin: KeycloakAdmin) -> None:
    from keycloak.exceptions import KeycloakError

    from skiff import devices

    name = f"test-{uuid.uuid4().hex[:8]}"
    secret = devices.add(sso, admin, name)
    own = kc.openid(sso.settings, devices.client_id(name), secret)
    try:
        token = own.token(grant_type="client_credentials")["access_token"]
        assert claims(token)["azp"] == devices.client_id(name)
        resp = api.get("/openapi.json", headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == 200, resp.text
        assert (name, True) in {(d.name, d.enabled) for d in devices.listing(admin)}

        devices.revoke(admin, name)
        with pytest.raises(KeycloakError) as refused:
            own.token(grant_type="client_credentials")
        assert refused.value.response_code in (400, 401)
        assert (name, False) in {(d.name, d.enabled) for d in devices.listing(admin)}
        # The rest of the fleet keeps its credentials.
        fleet = kc.openid(sso.settings, sso.settings.device_client_id,
                          sso.settings.device_client_secret.get_secret_value())
        other = fleet.token(grant_type="client_credentials")["access_token"]
        assert api.get("/openapi.json", headers={"Authorization": f"Bearer {other}"}).status_code == 200
        with pytest.raises(devices.DeviceError, match="no device"):
            devices.revoke(admin, f"never-{name}")
    finally:
        admin.delete_client(admin.get_client_id(devices.client_id(name)))
