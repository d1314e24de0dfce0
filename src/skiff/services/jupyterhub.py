"""JupyterHub: a JupyterLab workspace per user, behind Traefik at ``/jupyter/``.

Two programs: configurable-http-proxy (from npm, in the cache), the public side
on ``jupyterhub_port`` that Traefik routes ``/jupyter/`` to, and the hub (venv from
``docker/jupyterhub/requirements.txt``) on ``jupyterhub_hub_port``, which
configures the proxy through its API. The proxy is its own program (supervised
and probed like any other), so the hub never has to start or adopt it.

The hub's configuration is ``compose/jupyterhub/jupyterhub_config.py``, shared
with Compose; this module only fills its environment. People log in through
Keycloak (client ``jupyterhub``); each user's server is the workspace venv's
``jupyterhub-singleuser`` (JupyterLab with Elyra, services/workspace.py), started
as a local process with its home in ``data/jupyterhub/users/<name>``, seeded
from ``user-workspace/`` on first spawn.
"""

from __future__ import annotations

from pathlib import Path

from skiff.native import installing, system
from skiff.native.context import Context
from skiff.native.probes import http_ok
from skiff.native.spec import Program, Service
from skiff.services import workspace

NAME = "jupyterhub"
PROXY = "jupyterhub-proxy"
BASE_PATH = "/jupyter/"
# Variables with this prefix reach every user's server without it (see the config).
WORKSPACE_ENV_PREFIX = "WORKSPACE_ENV_"


def venv(ctx: Context) -> Path:
    return ctx.venv(NAME)


def proxy_dir(ctx: Context) -> Path:
    return ctx.component("configurable-http-proxy", ctx.versions.configurable_http_proxy_version)


def proxy_bin(ctx: Context) -> Path:
    return proxy_dir(ctx) / "node_modules" / ".bin" / "configurable-http-proxy"


def install(ctx: Context) -> None:
    installing.venv(NAME, venv(ctx), ctx.root / "docker" / NAME / "requirements.txt")
    install_proxy(ctx)
    # What the hub spawns: JupyterLab, Elyra and the platform's library.
    workspace.install(ctx)


def install_proxy(ctx: Context) -> None:
    """configurable-http-proxy from npm into the cache (Node.js: the machine's or from npm)."""
    dest = proxy_dir(ctx)
    if installing.is_installed(dest) and proxy_bin(ctx).exists():
        return
    system.node_bin(ctx)
    version = ctx.versions.configurable_http_proxy_version
    installing.step(PROXY, f"installing configurable-http-proxy {version} from npm into {dest}")
    dest.mkdir(parents=True, exist_ok=True)
    installing.run(PROXY, [*system.npm_cli(ctx), "install", "--prefix", str(dest), "--no-fund",
                           "--no-audit", "--omit=dev", f"configurable-http-proxy@{version}"],
                   log=dest / "install.log")
    installing.mark_installed(dest)


def public_url(ctx: Context) -> str:
    """Where people open JupyterHub: through Traefik."""
    return f"{ctx.settings.public_url}{BASE_PATH}"


def proxy_url(ctx: Context) -> str:
    """The proxy's own (loopback) address, what Traefik forwards ``/jupyter/`` to."""
    s = ctx.settings
    return f"http://{s.host('jupyterhub')}:{s.jupyterhub_port}{BASE_PATH}"


def hub_host(ctx: Context) -> str:
    """Where the proxy finds the hub: the same host natively, its own container in Compose."""
    s = ctx.settings
    return s.jupyterhub_hub_host or s.host("jupyterhub")


def hub_env(ctx: Context) -> dict[str, str]:
    """What jupyterhub_config.py reads; docker-compose.yml sets the same names."""
    s = ctx.settings
    env = {
        "JUPYTERHUB_SPAWNER": "local",
        "PUBLIC_URL": s.public_url,
        "JUPYTERHUB_DATA_DIR": str(ctx.data_dir(NAME)),
        "JUPYTERHUB_BIND_URL": f"http://{s.bind_host}:{s.jupyterhub_port}{BASE_PATH}",
        "JUPYTERHUB_HUB_BIND_URL": f"http://{s.bind_host}:{s.jupyterhub_hub_port}",
        "CONFIGPROXY_API_URL": f"http://{s.host('jupyterhub')}:{s.jupyterhub_proxy_api_port}",
        "CONFIGPROXY_AUTH_TOKEN": s.configproxy_auth_token.get_secret_value(),
        "JUPYTERHUB_CRYPT_KEY": s.jupyterhub_crypt_key.get_secret_value(),
        "KEYCLOAK_ISSUER": s.keycloak_issuer,
        "KEYCLOAK_INTERNAL_URL": s.keycloak_internal_url,
        "KEYCLOAK_REALM": s.keycloak_realm,
        "OAUTH_CLIENT_ID": "jupyterhub",
        "OAUTH_CLIENT_SECRET": s.jupyterhub_client_secret.get_secret_value(),
        "JUPYTERHUB_SINGLEUSER_CMD": str(ctx.venv("workspace") / "bin" / "jupyterhub-singleuser"),
        "JUPYTERHUB_USER_WORKSPACE": str(ctx.root / "user-workspace"),
    }
    env.update({WORKSPACE_ENV_PREFIX + k: v for k, v in workspace.spawn_env(ctx).items()})
    return env


def programs(ctx: Context) -> list[Program]:
    s = ctx.settings
    data = ctx.data_dir(NAME)
    proxy = Program(
        name=PROXY,
        # Run by our node: the script's `#!/usr/bin/env node` may find an older one.
        command=[str(system.node_bin(ctx, install=False)), str(proxy_bin(ctx)),
                 "--ip", s.bind_host, "--port", str(s.jupyterhub_port),
                 "--api-ip", s.bind_host, "--api-port", str(s.jupyterhub_proxy_api_port),
                 # Until the hub has added its routes, everything goes to the hub.
                 "--default-target", f"http://{hub_host(ctx)}:{s.jupyterhub_hub_port}",
                 "--error-target", f"http://{hub_host(ctx)}:{s.jupyterhub_hub_port}{BASE_PATH}hub/error",
                 "--log-level", "warn"],
        env={"CONFIGPROXY_AUTH_TOKEN": s.configproxy_auth_token.get_secret_value()},
        directory=data,
    )
    hub = Program(
        name=NAME,
        command=[str(venv(ctx) / "bin" / "jupyterhub"),
                 "--config", str(ctx.compose_file(NAME, "jupyterhub_config.py"))],
        env=hub_env(ctx),
        directory=data,
        # The hub stops the users' servers on its way out.
        stop_wait=30,
        health=_hub_answers,
    )
    return [proxy, hub]


def _hub_answers(ctx: Context) -> None:
    """The hub itself, without its proxy (a container's probe)."""
    http_ok(f"http://{hub_host(ctx)}:{ctx.settings.jupyterhub_hub_port}{BASE_PATH}hub/health")


def ready(ctx: Context) -> None:
    # Through the proxy: answers only once both programs run and the hub has its route.
    http_ok(f"{proxy_url(ctx)}hub/health")


SERVICE = Service(
    name=NAME,
    packages=("git",),
    description="JupyterHub: a JupyterLab workspace (with Elyra) per user, Keycloak login",
    programs=programs,
    ready=ready,
    url=public_url,
    ports=lambda ctx: [ctx.settings.jupyterhub_port, ctx.settings.jupyterhub_proxy_api_port,
                       ctx.settings.jupyterhub_hub_port],
    depends_on=("keycloak",),
    install=install,
    start_timeout=120,
)
