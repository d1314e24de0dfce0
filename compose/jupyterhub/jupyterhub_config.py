"""JupyterHub's configuration, shared by native mode and Compose.

Everything that differs between the two comes from the environment, which
src/skiff/services/jupyterhub.py (native) and docker-compose.yml (Compose) set:
the addresses and the secrets. Both run each user's server as a local process of
the hub (JUPYTERHUB_SPAWNER=local; in Compose inside the jupyterhub container).
JUPYTERHUB_SPAWNER=docker (one container per user from docker/workspace/) is
configured but not used by either yet: per-person isolation is issue 15's.

People log in through Keycloak (realm roles decide who gets a notebook server),
the proxy is configurable-http-proxy run as its own program (native) or
container (Compose), and the hub keeps its state in SQLite in its data folder:
users and their servers are recreated from Keycloak and the spawner, so there is
nothing worth a database server of its own.

This file is plain Python without JupyterHub imports, so the unit tests load it
with a bare traitlets ``Config`` (tests/unit/test_jupyterhub_config.py).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# Realm roles (compose/keycloak/realm-skiff.json) that get a notebook server;
# citizens run pipelines from the portal and viewers only look, so neither has one.
NOTEBOOK_ROLES = ("admin", "data-engineer", "data-scientist")
ADMIN_ROLES = ("admin",)
PLATFORM_ROLES = ("admin", "data-engineer", "data-scientist", "citizen", "viewer")
# Variables named WORKSPACE_ENV_<NAME> reach every user's server as <NAME>
# (MLflow, S3...): the same mechanism in both modes, set by whoever starts the hub.
WORKSPACE_ENV_PREFIX = "WORKSPACE_ENV_"
# What supervisord gives its programs; it stops every process carrying them with
# the program, children in sessions of their own included.
SUPERVISOR_MARKERS = ("SUPERVISOR_PROCESS_NAME", "SUPERVISOR_SERVER_URL")
REFUSED = (
    "Your account has no notebook workspace: notebooks are for the roles "
    f"{', '.join(NOTEBOOK_ROLES)}. Ask a platform administrator for one of them; "
    "what your role allows stays open to you from the platform's home page."
)


def env(name: str, default: str | None = None) -> str:
    """A setting from the environment; a clear error when a required one is missing."""
    value = os.environ.get(name, "")
    if value:
        return value
    if default is None:
        raise RuntimeError(f"jupyterhub_config.py: environment variable {name} is not set")
    return default


def jwt_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT, without checking its signature.

    Only used on tokens the hub itself just received from Keycloak's token
    endpoint on the back channel, the same trust as the userinfo answer.
    """
    try:
        payload = token.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError) as exc:
        raise ValueError(f"the access token from Keycloak is not a JWT: {exc}") from None


def add_keycloak_claims(authenticator: Any, auth_state: dict[str, Any]) -> dict[str, Any]:
    """Keep the realm roles and teams of the access token in auth_state.

    Keycloak puts realm roles in the access token (``realm_access.roles``), not in
    the userinfo answer, so they are read from there; teams come from ``groups``.
    """
    claims = jwt_claims(auth_state["access_token"])
    auth_state["realm_roles"] = sorted((claims.get("realm_access") or {}).get("roles", []))
    auth_state["teams"] = sorted(claims.get("groups") or auth_state["oauth_user"].get("groups") or [])
    return auth_state


def hub_groups(auth_state: dict[str, Any]) -> list[str]:
    """The user's JupyterHub groups: their platform roles (not Keycloak's built-in ones)."""
    return [role for role in auth_state.get("realm_roles", []) if role in PLATFORM_ROLES]


def seed_home(template: Path, home: Path) -> bool:
    """Give a new user's home the example workspace; an existing home is left alone."""
    if home.exists():
        return False
    home.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(template, home)
    return True


def spawn_env_from(environ: dict[str, str]) -> dict[str, str]:
    """The users' servers' environment: WORKSPACE_ENV_<NAME> variables, prefix removed."""
    return {k[len(WORKSPACE_ENV_PREFIX):]: v for k, v in environ.items()
            if k.startswith(WORKSPACE_ENV_PREFIX) and len(k) > len(WORKSPACE_ENV_PREFIX)}


def own_s3_keys(catalog_url: str, user: str, access_token: str, timeout: float = 30.0) -> dict[str, str]:
    """``user``'s own S3 keys, asked of the catalog with their own token.

    The catalog makes the account on first use and keeps its folders of the
    platform's buckets up to date. No fallback to the platform's keys: without
    their own, the person gets no server and a message that says why.
    """
    if not catalog_url:
        raise RuntimeError("the hub knows no catalog (WORKSPACE_ENV_CATALOG_URL) to ask for "
                           f"{user}'s S3 keys")
    url = f"{catalog_url.rstrip('/')}/api/v1/users/{urllib.parse.quote(user, safe='')}/s3"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {access_token}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            keys = json.load(answer)
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"the catalog refused {user}'s S3 keys: HTTP {exc.code} "
                           f"{exc.read()[:300].decode(errors='replace')}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise RuntimeError(f"the catalog at {catalog_url} did not answer for {user}'s S3 keys: "
                           f"{exc}") from None
    return {"S3_ACCESS_KEY": keys["access_key"], "S3_SECRET_KEY": keys["secret_key"]}


def user_name_env(spawner: Any) -> str:
    return spawner.user.name


c = get_config()  # type: ignore[name-defined]  # noqa: F821 - provided by JupyterHub

# --- Where the hub lives ------------------------------------------------------
public_url = env("PUBLIC_URL").rstrip("/")
data_dir = Path(env("JUPYTERHUB_DATA_DIR"))
# The proxy's public side; its path is the hub's base_url (/jupyter/), the prefix
# Traefik routes here without stripping it.
c.JupyterHub.bind_url = env("JUPYTERHUB_BIND_URL")
c.JupyterHub.hub_bind_url = env("JUPYTERHUB_HUB_BIND_URL")
if os.environ.get("JUPYTERHUB_HUB_CONNECT_URL"):
    # Compose: users' containers reach the hub by its service name.
    c.JupyterHub.hub_connect_url = env("JUPYTERHUB_HUB_CONNECT_URL")
# Absolute URLs (redirects, links) use the public address, never what a request
# behind Traefik looks like (http, loopback port).
c.JupyterHub.public_url = f"{public_url}/jupyter/"
c.JupyterHub.db_url = f"sqlite:///{data_dir / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(data_dir / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(data_dir / "jupyterhub.pid")

# The proxy runs on its own (a supervised program, or a container): the hub sets
# its routes through its API and never starts or adopts it.
c.ConfigurableHTTPProxy.should_start = False
c.ConfigurableHTTPProxy.api_url = env("CONFIGPROXY_API_URL")
c.ConfigurableHTTPProxy.auth_token = env("CONFIGPROXY_AUTH_TOKEN")

# --- Login: Keycloak ----------------------------------------------------------
# Browsers go to Keycloak's public address; the hub's own calls (token, userinfo)
# go to the internal one. Tokens carry the public issuer either way, and the hub
# only sends them back to Keycloak, so there is no issuer to mismatch.
issuer = env("KEYCLOAK_ISSUER").rstrip("/")
internal_realm = f"{env('KEYCLOAK_INTERNAL_URL').rstrip('/')}/realms/{env('KEYCLOAK_REALM', 'skiff')}"
c.JupyterHub.authenticator_class = "keycloak_authenticator.KeycloakAuthenticator"
sys.path.insert(0, str(HERE))  # keycloak_authenticator.py lives next to this file
auth = c.GenericOAuthenticator
auth.login_service = "Skiff (Keycloak)"
auth.client_id = env("OAUTH_CLIENT_ID", "jupyterhub")
auth.client_secret = env("OAUTH_CLIENT_SECRET")
auth.authorize_url = f"{issuer}/protocol/openid-connect/auth"
auth.token_url = f"{internal_realm}/protocol/openid-connect/token"
auth.userdata_url = f"{internal_realm}/protocol/openid-connect/userinfo"
auth.oauth_callback_url = f"{public_url}/jupyter/hub/oauth_callback"
auth.scope = ["openid", "profile", "email"]
auth.username_claim = "preferred_username"
auth.modify_auth_state_hook = add_keycloak_claims
# Realm roles become JupyterHub groups; they decide who may log in and who is admin.
auth.manage_groups = True
auth.auth_state_groups_key = hub_groups
auth.allowed_groups = set(NOTEBOOK_ROLES)
auth.admin_groups = set(ADMIN_ROLES)
auth.custom_403_message = REFUSED
# Logging out of the hub ends the Keycloak session too (keycloak_authenticator.py).
c.KeycloakAuthenticator.end_session_url = f"{issuer}/protocol/openid-connect/logout"
c.KeycloakAuthenticator.post_logout_redirect_url = f"{public_url}/"
# One login for the whole platform: no hub login page, straight to Keycloak.
c.Authenticator.auto_login = True
# Tokens are kept (encrypted with JUPYTERHUB_CRYPT_KEY) and checked with Keycloak
# again every AUTH_REFRESH_AGE seconds and before each spawn: once the Keycloak
# session ends (logout, disabled account), the next check fails and the user must
# log in again. Strict: token-authenticated requests (the user's server checking
# its visitor with the hub) fail too instead of riding on stale auth.
c.Authenticator.enable_auth_state = True
c.Authenticator.auth_refresh_age = int(env("JUPYTERHUB_AUTH_REFRESH_AGE", "30"))
c.Authenticator.refresh_pre_spawn = True
c.Authenticator.auth_refresh_strict = True

# --- The users' servers -------------------------------------------------------
spawner_kind = env("JUPYTERHUB_SPAWNER", "local")
seed_hook: Any = None  # what a spawner kind prepares before a spawn (a new home)
workspace_env = spawn_env_from(dict(os.environ))
c.Spawner.environment = {
    **workspace_env,
    # Who runs the notebook: MLflow's run user (it reads LOGNAME) and the platform's own.
    "SKIFF_USER": user_name_env,
    "LOGNAME": user_name_env,
}
c.Spawner.default_url = "/lab"
# skiff.catalog.Client in a notebook calls the catalog as its user with the user's
# own Keycloak access token, which the hub keeps (refreshed) in their auth_state:
# each server's API token may read its own user's auth_state and nobody else's.
# The token gets only scopes its user holds, so users hold that one too.
SERVER_TOKEN_SCOPES = ["users:activity!user", "access:servers!server", "read:users:name!user",
                       "admin:auth_state!user"]
USER_ROLE = {"name": "user", "scopes": ["self", "admin:auth_state!user"]}
c.Spawner.server_token_scopes = SERVER_TOKEN_SCOPES
c.JupyterHub.load_roles = [USER_ROLE]
# The user's server checks its visitors with the hub at least this often, so a
# Keycloak logout reaches open notebook tabs within about two refresh periods.
c.Spawner.args = [f"--HubOAuth.cache_max_age={c.Authenticator.auth_refresh_age}"]
c.Spawner.http_timeout = 120
c.Spawner.start_timeout = 180

if spawner_kind == "local":
    # No system accounts: each user's server is a process of the hub's own user,
    # with its own home. Fine for one trusted machine; Compose isolates users in
    # containers.
    users_dir = data_dir / "users"
    template = Path(env("JUPYTERHUB_USER_WORKSPACE"))
    c.JupyterHub.spawner_class = "simple"
    c.SimpleLocalProcessSpawner.home_dir_template = str(users_dir / "{username}")
    c.Spawner.cmd = [env("JUPYTERHUB_SINGLEUSER_CMD")]
    # Where the servers listen, which is where the proxy sends their users: loopback
    # natively; in Compose the hub container's name, as the proxy is another container.
    c.Spawner.ip = env("JUPYTERHUB_SPAWNER_IP", "127.0.0.1")
    if os.geteuid() == 0:
        # jupyter-server refuses root unless told; containers and CI run as root.
        c.Spawner.args = [*c.Spawner.args, "--allow-root"]
    # supervisord finds a stopped hub's stray servers by these (skiff down jupyterhub).
    c.Spawner.env_keep = ["PATH", "LANG", "LC_ALL", *SUPERVISOR_MARKERS]

    def seed(spawner: Any) -> None:
        if seed_home(template, users_dir / spawner.user.name):
            spawner.log.info("Seeded %s's home from %s", spawner.user.name, template)

    seed_hook = seed
elif spawner_kind == "docker":
    # One container per user from the workspace image, on the Compose network, with
    # a named volume as home. Docker fills a new volume with what the image holds
    # at that path, which is how the example workspace reaches a new user.
    c.JupyterHub.spawner_class = "docker"
    c.DockerSpawner.image = env("DOCKER_WORKSPACE_IMAGE")
    c.DockerSpawner.network_name = env("DOCKER_NETWORK_NAME")
    home = env("DOCKER_WORKSPACE_HOME", "/home/jovyan")
    c.DockerSpawner.notebook_dir = home
    # Plus volumes every user shares, "name:path,name:path" (the folder of the
    # pipelines' DAGs, which Airflow's containers mount too).
    shared = dict(item.split(":", 1) for item in env("DOCKER_SHARED_VOLUMES", "").split(",") if item)
    c.DockerSpawner.volumes = {"skiff-jupyter-{username}": home, **shared}
    c.DockerSpawner.remove = True
    c.DockerSpawner.cmd = ["jupyterhub-singleuser"]
else:
    raise RuntimeError(f"JUPYTERHUB_SPAWNER={spawner_kind!r}: expected 'local' or 'docker'")



async def with_own_keys(spawner: Any) -> None:
    """Before each spawn: the person's own S3 keys into their server's environment."""
    state = await spawner.user.get_auth_state() or {}
    if not state.get("access_token"):
        raise RuntimeError(f"no Keycloak token is kept for {spawner.user.name}: log in again")
    keys = await asyncio.to_thread(own_s3_keys, workspace_env.get("CATALOG_URL", ""),
                                   spawner.user.name, state["access_token"])
    spawner.environment = {**spawner.environment, **keys}
    spawner.log.info("%s's server gets their own S3 keys (%s)", spawner.user.name,
                     keys["S3_ACCESS_KEY"])


async def pre_spawn(spawner: Any) -> None:
    if seed_hook is not None:
        seed_hook(spawner)
    await with_own_keys(spawner)


c.Spawner.pre_spawn_hook = pre_spawn

# --- Idle servers -------------------------------------------------------------
cull_after = int(env("JUPYTERHUB_CULL_IDLE_SECONDS", "3600"))
if cull_after > 0:
    c.JupyterHub.services = [{
        "name": "idle-culler",
        "command": [sys.executable, "-m", "jupyterhub_idle_culler", f"--timeout={cull_after}"],
        # Natively: marked as the hub's, like the users' servers.
        "environment": {k: os.environ[k] for k in SUPERVISOR_MARKERS if k in os.environ},
    }]
    c.JupyterHub.load_roles = [USER_ROLE, {
        "name": "idle-culler",
        "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
        "services": ["idle-culler"],
    }]
