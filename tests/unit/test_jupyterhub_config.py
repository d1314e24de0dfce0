"""compose/jupyterhub/jupyterhub_config.py loaded as the hub loads it, into a traitlets Config.

No hub runs here: these check what the file asks of JupyterHub (who may log in,
which Keycloak address each call uses, what the users' servers get) for both the
native and the Compose environment.
"""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import pytest
from traitlets.config import Config

from skiff.native.context import Context
from skiff.services import jupyterhub, workspace
from tests.unit.test_compose_file import assert_listens

pytestmark = pytest.mark.unit

PUBLIC = "https://skiff.example.org:8443"
INTERNAL = "http://10.0.0.5:8180/auth"
ISSUER = f"{PUBLIC}/auth/realms/skiff"


def native_env(tmp_path: Path) -> dict[str, str]:
    return {
        "JUPYTERHUB_SPAWNER": "local",
        "PUBLIC_URL": PUBLIC,
        "JUPYTERHUB_DATA_DIR": str(tmp_path / "data"),
        "JUPYTERHUB_BIND_URL": "http://127.0.0.1:8100/jupyter/",
        "JUPYTERHUB_HUB_BIND_URL": "http://127.0.0.1:8081",
        "CONFIGPROXY_API_URL": "http://127.0.0.1:8101",
        "CONFIGPROXY_AUTH_TOKEN": "proxy-token",
        "JUPYTERHUB_CRYPT_KEY": "ab" * 32,
        "KEYCLOAK_ISSUER": ISSUER,
        "KEYCLOAK_INTERNAL_URL": INTERNAL,
        "KEYCLOAK_REALM": "skiff",
        "OAUTH_CLIENT_ID": "jupyterhub",
        "OAUTH_CLIENT_SECRET": "client-secret",
        "JUPYTERHUB_SINGLEUSER_CMD": "/venvs/workspace/bin/jupyterhub-singleuser",
        "JUPYTERHUB_USER_WORKSPACE": str(tmp_path / "template"),
        "WORKSPACE_ENV_MLFLOW_TRACKING_URI": "http://127.0.0.1:5000",
        "WORKSPACE_ENV_S3_REGION": "us-east-1",
    }


def load(root: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str],
         euid: int = 1000) -> tuple[Config, dict[str, Any]]:
    """The config as JupyterHub builds it, and the file's own functions (its namespace).

    Like traitlets' PyFileConfigLoader: the file runs with ``get_config`` returning
    the Config being built.
    """
    for name in list(os.environ):
        if name.startswith(("JUPYTERHUB_", "WORKSPACE_ENV_", "KEYCLOAK_", "OAUTH_", "CONFIGPROXY_",
                            "DOCKER_", "PUBLIC_URL")):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("os.geteuid", lambda: euid)
    path = root / "compose" / "jupyterhub" / "jupyterhub_config.py"
    config = Config()
    namespace: dict[str, Any] = {"get_config": lambda: config, "__file__": str(path)}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    return config, namespace


def jwt(claims: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")
    return f"{part({'alg': 'RS256'})}.{part(claims)}.signature"


def test_only_notebook_roles_log_in_and_admins_become_hub_admins(
        root: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    c, _ = load(root, monkeypatch, native_env(tmp_path))
    auth = c.GenericOAuthenticator
    assert auth.allowed_groups == {"admin", "data-engineer", "data-scientist"}
    assert auth.admin_groups == {"admin"}
    assert auth.manage_groups is True
    # Nobody gets in by another door.
    for door in ("allow_all", "allow_existing_users", "allowed_users", "admin_users"):
        assert door not in auth and door not in c.Authenticator
    assert "notebook" in auth.custom_403_message and "data-scientist" in auth.custom_403_message


def test_browsers_use_the_public_keycloak_and_the_hub_the_internal_one(
        root: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    c, _ = load(root, monkeypatch, native_env(tmp_path))
    auth = c.GenericOAuthenticator
    assert auth.authorize_url == f"{ISSUER}/protocol/openid-connect/auth"
    assert auth.token_url == f"{INTERNAL}/realms/skiff/protocol/openid-connect/token"
    assert auth.userdata_url == f"{INTERNAL}/realms/skiff/protocol/openid-connect/userinfo"
    assert auth.oauth_callback_url == f"{PUBLIC}/jupyter/hub/oauth_callback"
    assert auth.client_secret == "client-secret"
    assert c.KeycloakAuthenticator.end_session_url == f"{ISSUER}/protocol/openid-connect/logout"
    assert c.JupyterHub.public_url == f"{PUBLIC}/jupyter/"
    assert c.JupyterHub.authenticator_class == "keycloak_authenticator.KeycloakAuthenticator"


def test_auth_state_is_kept_and_checked_again_with_keycloak(
        root: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    c, _ = load(root, monkeypatch, {**native_env(tmp_path), "JUPYTERHUB_AUTH_REFRESH_AGE": "45"})
    assert c.Authenticator.enable_auth_state is True
    assert c.Authenticator.auth_refresh_age == 45
    assert c.Authenticator.refresh_pre_spawn is True
    assert c.Authenticator.auth_refresh_strict is True
    assert "--HubOAuth.cache_max_age=45" in c.Spawner.args


def test_roles_come_from_the_access_token_and_keycloak_built_ins_are_dropped(
        root: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _, ns = load(root, monkeypatch, native_env(tmp_path))
    token = jwt({"iss": ISSUER, "preferred_username": "ada", "groups": ["cardio"],
                 "realm_access": {"roles": ["offline_access", "data-scientist",
                                            "default-roles-skiff", "viewer"]}})
    state = ns["add_keycloak_claims"](None, {"access_token": token, "oauth_user": {}})
    assert state["realm_roles"] == ["data-scientist", "default-roles-skiff", "offline_access", "viewer"]
    assert state["teams"] == ["cardio"]
    assert ns["hub_groups"](state) == ["data-scientist", "viewer"]
    assert ns["hub_groups"]({"realm_roles": ["citizen"]}) == ["citizen"]
    with pytest.raises(ValueError, match="not a JWT"):
        ns["jwt_claims"]("opaque-token")


def test_native_users_get_a_local_server_with_the_workspace_settings(
        root: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    c, _ = load(root, monkeypatch, native_env(tmp_path))
    assert c.JupyterHub.spawner_class == "simple"
    assert c.Spawner.cmd == ["/venvs/workspace/bin/jupyterhub-singleuser"]
    assert c.SimpleLocalProcessSpawner.home_dir_template == str(tmp_path / "data/users/{username}")
    assert c.Spawner.default_url == "/lab"
    assert "--allow-root" not in c.Spawner.args
    # supervisord recognises the servers as the hub's (skiff down jupyterhub stops them).
    assert {"SUPERVISOR_PROCESS_NAME", "SUPERVISOR_SERVER_URL"} <= set(c.Spawner.env_keep)
    env = c.Spawner.environment
    assert env["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5000"
    assert env["S3_REGION"] == "us-east-1"
    assert not any(k.startswith("WORKSPACE_ENV_") for k in env)
    spawner = SimpleNamespace(user=SimpleNamespace(name="ada"))
    assert env["SKIFF_USER"](spawner) == "ada"
    assert env["LOGNAME"](spawner) == "ada"
    assert c.JupyterHub.db_url == f"sqlite:///{tmp_path / 'data/jupyterhub.sqlite'}"


def test_root_gets_allow_root(root: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    c, _ = load(root, monkeypatch, native_env(tmp_path), euid=0)
    assert "--allow-root" in c.Spawner.args


def test_first_spawn_seeds_the_home_and_later_spawns_leave_it_alone(
        root: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    template = tmp_path / "template"
    (template / "notebooks").mkdir(parents=True)
    (template / "notebooks" / "example.ipynb").write_text("{}")
    _, ns = load(root, monkeypatch, native_env(tmp_path))
    home = tmp_path / "data" / "users" / "ada"
    spawner = SimpleNamespace(user=SimpleNamespace(name="ada"), log=SimpleNamespace(info=print))
    ns["seed_hook"](spawner)
    assert (home / "notebooks" / "example.ipynb").read_text() == "{}"
    (home / "notebooks" / "example.ipynb").write_text("mine")
    ns["seed_hook"](spawner)
    assert (home / "notebooks" / "example.ipynb").read_text() == "mine"


def test_a_spawn_without_the_persons_own_keys_is_refused(
        root: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No token kept, or no catalog to ask: no server, rather than one with the platform's keys."""
    import asyncio

    env = native_env(tmp_path)
    c, ns = load(root, monkeypatch, env)
    assert "S3_SECRET_KEY" not in c.Spawner.environment

    async def no_state() -> None:
        return None

    spawner = SimpleNamespace(user=SimpleNamespace(name="ada", get_auth_state=no_state),
                              log=SimpleNamespace(info=print), environment={})
    with pytest.raises(RuntimeError, match="no Keycloak token is kept for ada"):
        asyncio.run(ns["with_own_keys"](spawner))
    with pytest.raises(RuntimeError, match="knows no catalog"):
        ns["own_s3_keys"]("", "ada", "token")
    assert spawner.environment == {}


def test_a_missing_setting_is_named(root: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env = native_env(tmp_path)
    del env["OAUTH_CLIENT_SECRET"]
    with pytest.raises(RuntimeError, match="OAUTH_CLIENT_SECRET is not set"):
        load(root, monkeypatch, env)


def test_an_unknown_spawner_is_refused(root: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="JUPYTERHUB_SPAWNER='kubernetes'"):
        load(root, monkeypatch, {**native_env(tmp_path), "JUPYTERHUB_SPAWNER": "kubernetes"})


def test_the_native_service_sets_what_the_config_reads(
        root: Path, monkeypatch: pytest.MonkeyPatch, ctx: Context) -> None:
    c, _ = load(root, monkeypatch, jupyterhub.hub_env(ctx), euid=0)
    s = ctx.settings
    assert c.JupyterHub.spawner_class == "simple"
    assert c.Spawner.cmd == [str(ctx.venv("workspace") / "bin" / "jupyterhub-singleuser")]
    assert c.JupyterHub.bind_url == f"http://{s.bind_host}:{s.jupyterhub_port}/jupyter/"
    assert c.GenericOAuthenticator.authorize_url.startswith(s.keycloak_issuer + "/")
    assert c.GenericOAuthenticator.token_url.startswith(s.keycloak_internal_url + "/")
    spawned = {k for k in c.Spawner.environment if k not in ("SKIFF_USER", "LOGNAME")}
    assert spawned == set(workspace.spawn_env(ctx))
    # The proxy program and the hub agree on the proxy's API and its token.
    proxy, hub = jupyterhub.programs(ctx)
    assert proxy.command[proxy.command.index("--api-port") + 1] == \
        c.ConfigurableHTTPProxy.api_url.rsplit(":", 1)[1]
    assert proxy.env["CONFIGPROXY_AUTH_TOKEN"] == c.ConfigurableHTTPProxy.auth_token
    assert hub.command[-1] == str(root / "compose" / "jupyterhub" / "jupyterhub_config.py")


def test_in_compose_the_hub_and_its_proxy_find_each_other_by_service_name(
        root: Path, monkeypatch: pytest.MonkeyPatch, compose_ctx: Context,
        compose_doc: dict[str, Any]) -> None:
    proxy, hub = jupyterhub.programs(compose_ctx)
    s = compose_ctx.settings
    c, _ = load(root, monkeypatch, hub.env, euid=0)
    # The users' servers are local processes of the hub's container, as natively.
    assert c.JupyterHub.spawner_class == "simple"
    assert c.JupyterHub.bind_url == f"http://0.0.0.0:{s.jupyterhub_port}/jupyter/"
    assert c.JupyterHub.hub_bind_url == f"http://0.0.0.0:{s.jupyterhub_hub_port}"
    # The hub configures the proxy in the proxy's container, with the proxy's token...
    api = urlsplit(c.ConfigurableHTTPProxy.api_url)
    assert api.hostname == proxy.name
    assert_listens(compose_ctx, compose_doc, api.hostname, api.port, "CONFIGPROXY_API_URL")
    assert proxy.command[proxy.command.index("--api-port") + 1] == str(api.port)
    assert proxy.command[proxy.command.index("--api-ip") + 1] == "0.0.0.0"
    assert proxy.env["CONFIGPROXY_AUTH_TOKEN"] == c.ConfigurableHTTPProxy.auth_token
    # ...and the proxy sends what has no route yet to the hub's container.
    target = urlsplit(proxy.command[proxy.command.index("--default-target") + 1])
    assert (target.hostname, target.port) == (hub.name, s.jupyterhub_hub_port)
    assert target.hostname in compose_doc["services"]
    # The hub's own calls go to Keycloak's container; browsers go to the public address.
    token = urlsplit(c.GenericOAuthenticator.token_url)
    assert_listens(compose_ctx, compose_doc, token.hostname, token.port, "token_url")
    assert c.GenericOAuthenticator.authorize_url.startswith(f"{s.public_url}/auth/realms/")
    assert c.Spawner.environment["MLFLOW_TRACKING_URI"].startswith(f"http://mlflow:{s.mlflow_port}/")


def test_hub_image_pins_the_versions_file(root: Path, versions: dict[str, str]) -> None:
    text = (root / "docker" / "jupyterhub" / "requirements.txt").read_text()
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==(\S+)", text, re.M))
    assert pins["jupyterhub"] == versions["JUPYTERHUB_VERSION"]
    assert pins["oauthenticator"].startswith("17.")
    unpinned = [line for line in text.splitlines()
                if line.strip() and not line.startswith("#") and "==" not in line]
    assert unpinned == []


def test_the_example_notebook_is_the_one_airflow_runs(root: Path) -> None:
    example = root / "user-workspace" / "notebooks" / "bracelet_train.ipynb"
    assert example.read_bytes() == (root / "notebooks" / "bracelet_train.ipynb").read_bytes(), \
        "user-workspace/notebooks/bracelet_train.ipynb differs from notebooks/: copy it again"


def test_idle_servers_are_culled_by_a_service_supervisord_knows(
        root: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    marks = {"SUPERVISOR_PROCESS_NAME": "jupyterhub", "SUPERVISOR_SERVER_URL": "unix:///x.sock"}
    c, _ = load(root, monkeypatch, {**native_env(tmp_path), **marks,
                                    "JUPYTERHUB_CULL_IDLE_SECONDS": "600"})
    (culler,) = c.JupyterHub.services
    assert "--timeout=600" in culler["command"]
    assert culler["environment"] == marks
    c, _ = load(root, monkeypatch, {**native_env(tmp_path), "JUPYTERHUB_CULL_IDLE_SECONDS": "0"})
    assert "services" not in c.JupyterHub
