"""Talking to the platform's Keycloak: admin API, tokens, users (python-keycloak).

Everything here uses the internal (back-channel) address,
``settings.keycloak_internal_url``; tokens still carry the public issuer,
``settings.keycloak_issuer`` (hostname v2, see services/keycloak.py).
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass

import httpx
from keycloak import KeycloakAdmin, KeycloakOpenID, KeycloakOpenIDConnection
from keycloak.exceptions import KeycloakError

from skiff.settings import Settings

# The realm roles of compose/keycloak/realm-skiff.json, most powerful first.
ROLES = ("admin", "data-engineer", "data-scientist", "citizen", "viewer")
# Keycloak lower-cases user names; refuse what it would silently change.
USERNAME = re.compile(r"^[a-z0-9][a-z0-9._@-]{2,62}$")
TEAM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,62}$")
# Renew a cached token this many seconds before it expires (clock skew, slow calls).
RENEW_MARGIN = 30.0


class UserError(ValueError):
    """A request about users that cannot be carried out; the message says why."""


def describe(exc: KeycloakError) -> str:
    """A one-line account of a python-keycloak error: status and Keycloak's own words."""
    message = exc.error_message
    if isinstance(message, bytes):
        message = message.decode(errors="replace")
    try:
        body = json.loads(message)
        if isinstance(body, dict):
            message = body.get("errorMessage") or body.get("error_description") or \
                body.get("error") or message
    except ValueError:
        pass
    status = f"HTTP {exc.response_code}: " if exc.response_code else ""
    return f"{status}{message}".strip()


def _server_url(settings: Settings) -> str:
    # python-keycloak urljoin()s its paths: without the slash, /auth would be dropped.
    return settings.keycloak_internal_url.rstrip("/") + "/"


def admin_client(settings: Settings) -> KeycloakAdmin:
    """The admin API of the platform's realm, as the master realm's bootstrap admin."""
    connection = KeycloakOpenIDConnection(
        server_url=_server_url(settings),
        username=settings.keycloak_admin_user,
        password=settings.keycloak_admin_password.get_secret_value(),
        realm_name=settings.keycloak_realm,
        user_realm_name="master",
        client_id="admin-cli",
        timeout=30,
    )
    return KeycloakAdmin(connection=connection)


def openid(settings: Settings, client_id: str, secret: str | None) -> KeycloakOpenID:
    """The realm's OpenID endpoints for one client, at the internal address."""
    return KeycloakOpenID(server_url=_server_url(settings), realm_name=settings.keycloak_realm,
                          client_id=client_id, client_secret_key=secret, timeout=30)


def client_secret(settings: Settings, client_id: str) -> str:
    """The secret .env holds for one of the realm's confidential clients."""
    known = {
        "portal": settings.portal_client_secret,
        "jupyterhub": settings.jupyterhub_client_secret,
        "airflow": settings.airflow_client_secret,
        "mlflow": settings.mlflow_client_secret,
        settings.device_client_id: settings.device_client_secret,
    }
    if client_id not in known:
        raise UserError(f"no secret for client {client_id!r} (known: {', '.join(known)})")
    return known[client_id].get_secret_value()


@dataclass
class CachedToken:
    """Client-credentials tokens for one client, fetched again shortly before expiry."""

    client: KeycloakOpenID
    _token: str | None = None
    _expires: float = 0.0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def get(self) -> str:
        with self._lock:
            if self._token is None or time.monotonic() > self._expires - RENEW_MARGIN:
                answer = self.client.token(grant_type="client_credentials")
                self._token = answer["access_token"]
                self._expires = time.monotonic() + float(answer.get("expires_in", 60))
            return self._token

    def forget(self) -> None:
        with self._lock:
            self._token = None


_device_tokens: dict[tuple[str, str, str], CachedToken] = {}
_device_lock = threading.Lock()


def _device_cache(settings: Settings) -> CachedToken:
    key = (settings.keycloak_internal_url, settings.keycloak_realm, settings.device_client_id)
    with _device_lock:
        if key not in _device_tokens:
            _device_tokens[key] = CachedToken(openid(
                settings, settings.device_client_id,
                settings.device_client_secret.get_secret_value()))
        return _device_tokens[key]


def device_token(settings: Settings) -> str:
    """An access token of the devices' client (client credentials; audience model-api).

    Cached per process and renewed shortly before it expires, so callers may ask
    for one per request.
    """
    return _device_cache(settings).get()


class DeviceAuth(httpx.Auth):
    """httpx auth for the model API: the device token, renewed as it nears expiry.

    A 401 answer makes it fetch a fresh token and send the request once more
    (the token may have been revoked, or Keycloak's keys rotated).
    """

    def __init__(self, settings: Settings) -> None:
        self._tokens = _device_cache(settings)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._tokens.get()}"
        response = yield request
        if response.status_code == 401:
            self._tokens.forget()
            request.headers["Authorization"] = f"Bearer {self._tokens.get()}"
            yield request


def user_token(settings: Settings, username: str, password: str, client_id: str = "airflow") -> str:
    """A user's access token by password (direct access grant: clients airflow, mlflow)."""
    client = openid(settings, client_id, client_secret(settings, client_id))
    return client.token(username=username, password=password, grant_type="password")["access_token"]


def service_token(settings: Settings) -> str:
    """The platform's service caller (``service-account-airflow``): client credentials of
    client airflow, what the catalog lets provision users' data sources."""
    client = openid(settings, "airflow", client_secret(settings, "airflow"))
    return client.token(grant_type="client_credentials")["access_token"]


def find_user(admin: KeycloakAdmin, name: str) -> dict | None:
    """The user named exactly ``name``, or None (Keycloak's search is by prefix)."""
    found = admin.get_users({"username": name, "exact": True})
    return found[0] if found else None


def check_role(role: str) -> str:
    if role not in ROLES:
        raise UserError(f"unknown role {role!r}: choose one of {', '.join(ROLES)}")
    return role


def check_username(name: str) -> str:
    if not USERNAME.match(name):
        raise UserError(f"invalid user name {name!r}: 3 to 63 lower-case letters, digits and "
                        ". _ @ - (Keycloak lower-cases user names)")
    return name


def check_team(team: str) -> str:
    if not TEAM.match(team):
        raise UserError(f"invalid team {team!r}: letters, digits, spaces and . _ - only, "
                        "starting with a letter or digit")
    return team


def ensure_team(admin: KeycloakAdmin, team: str) -> str:
    """The id of the team's group (a top-level group), created if missing."""
    for group in admin.get_groups({"search": team, "exact": True}):
        if group["name"] == team:
            return group["id"]
    created = admin.create_group({"name": team}, skip_exists=True)
    if created:
        return created
    return admin.get_group_by_path(f"/{team}")["id"]


def generate_password() -> str:
    return secrets.token_urlsafe(12)


def create_user(settings: Settings, name: str, role: str, team: str | None,
                password: str | None = None, *, email: str | None = None,
                admin: KeycloakAdmin | None = None) -> str:
    """Create a user with one realm role, in one team (group) if given; returns the password.

    A password is generated when none is given. Fails with :class:`UserError` if
    the user exists or the role is not one of the realm's.
    """
    check_username(name)
    check_role(role)
    if team is not None:
        check_team(team)
    admin = admin or admin_client(settings)
    if find_user(admin, name) is not None:
        raise UserError(f"user {name!r} already exists in realm {settings.keycloak_realm!r}")
    password = password or generate_password()
    payload: dict = {
        "username": name, "enabled": True,
        # Nothing to confirm at first login: the account is usable at once.
        "emailVerified": email is not None, "requiredActions": [],
        "credentials": [{"type": "password", "value": password, "temporary": False}],
    }
    if email:
        payload["email"] = email
    # Team and role first: a user that exists is a user that is complete.
    group_id = ensure_team(admin, team) if team else None
    role_rep = admin.get_realm_role(role)
    user_id = admin.create_user(payload)
    try:
        admin.assign_realm_roles(user_id, [role_rep])
        if group_id:
            admin.group_user_add(user_id, group_id)
    except KeycloakError:
        admin.delete_user(user_id)
        raise
    return password


@dataclass(frozen=True)
class UserRow:
    name: str
    email: str
    roles: tuple[str, ...]
    teams: tuple[str, ...]
    enabled: bool


def list_users(admin: KeycloakAdmin) -> list[UserRow]:
    """Every person in the realm (service accounts left out) with platform roles and teams."""
    rows = []
    for user in admin.get_users({"briefRepresentation": True}):
        if user.get("serviceAccountClientId") or user["username"].startswith("service-account-"):
            continue
        roles = tuple(r["name"] for r in admin.get_realm_roles_of_user(user["id"])
                      if r["name"] in ROLES)
        teams = tuple(g["name"] for g in admin.get_user_groups(user["id"]))
        rows.append(UserRow(user["username"], user.get("email", ""), roles, teams,
                            bool(user.get("enabled"))))
    return sorted(rows, key=lambda r: r.name)


# Keycloak's default user profile requires these of every user, and refuses tokens
# ("Account is not fully set up") until they are filled in at a login page:
# a device-less CLI user or a service would never get one.
OPTIONAL_PROFILE = ("email", "firstName", "lastName")


def relax_user_profile(admin: KeycloakAdmin) -> bool:
    """Make e-mail and names optional in the realm's user profile; True if it changed."""
    profile = admin.get_realm_users_profile()
    changed = False
    for attribute in profile["attributes"]:
        if attribute["name"] in OPTIONAL_PROFILE and attribute.pop("required", None) is not None:
            changed = True
    if changed:
        admin.update_realm_users_profile(profile)
    return changed


def sync_client_secrets(admin: KeycloakAdmin, wanted: dict[str, str]) -> list[str]:
    """Set each confidential client's secret to .env's; returns the clients changed.

    The realm import happens once; this keeps the secrets in step afterwards
    (as postgres' bootstrap does with database passwords).
    """
    changed = []
    for client_id, secret in wanted.items():
        internal_id = admin.get_client_id(client_id)
        if internal_id is None:
            raise UserError(f"client {client_id!r} is missing from the realm: it comes from "
                            "compose/keycloak/realm-skiff.json")
        current = admin.get_client_secrets(internal_id).get("value")
        if current != secret:
            rep = admin.get_client(internal_id)
            rep["secret"] = secret
            admin.update_client(internal_id, rep)
            changed.append(client_id)
    return changed
