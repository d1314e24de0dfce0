"""Inside a notebook server: skiff.catalog.Client finds its user's own token, with nothing configured.

A data scientist logs in to JupyterHub through Keycloak (the real login form) and
gets a server; the client, given only that server's environment (what a notebook
sees), reads the user's Keycloak token from their JupyterHub auth_state and the
catalog answers as that user. The server's API token may read its own user's
auth_state and no one else's.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest

from skiff import keycloak
from skiff.catalog.client import CatalogError, Client, hub_token_source
from skiff.native.context import Context
from tests.integration.test_jupyterhub import (
    Account,
    api,
    hub_token,
    log_in,
    server_environment,
    trust,
    wait_for_server,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def scientist(stack: Context) -> Iterator[Account]:
    import secrets

    name = f"cn-scientist-{secrets.token_hex(3)}"
    password = keycloak.create_user(stack.settings, name, role="data-scientist", team="cn-team")
    yield Account(name, password)
    admin = keycloak.admin_client(stack.settings)
    user_id = admin.get_user_id(name)
    if user_id:
        admin.delete_user(user_id)


@pytest.mark.skipif(os.environ.get("SKIFF_TEST_MODE") == "compose",
                    reason="reads the server process's environment (native mode)")
def test_a_notebook_servers_client_acts_as_its_user(stack: Context, scientist: Account) -> None:
    public = f"{stack.settings.public_url}/jupyter/"
    with httpx.Client(verify=trust(stack), follow_redirects=True, timeout=60) as browser:
        log_in(browser, f"{public}hub/home", scientist)
        token = hub_token(browser, public, scientist.name)
        wait_for_server(browser, public, scientist.name, token)
        try:
            env = server_environment(scientist.name)
            source = hub_token_source(env)
            assert source is not None
            notebook_env = {k: env[k] for k in ("JUPYTERHUB_API_URL", "JUPYTERHUB_API_TOKEN",
                                                "JUPYTERHUB_USER", "CATALOG_URL")}
            os_environ = dict(os.environ)
            try:
                os.environ.clear()
                os.environ.update(notebook_env)
                with Client() as client:
                    me = client.me()
            finally:
                os.environ.clear()
                os.environ.update(os_environ)
            assert me["user"] == scientist.name
            assert "cn-team" in me["teams"]

            # The server's token reads its own user's auth_state only.
            other = {**notebook_env, "JUPYTERHUB_USER": stack.settings.platform_admin_user}
            other_source = hub_token_source(other)
            assert other_source is not None
            with pytest.raises(CatalogError) as refused:
                other_source()
            assert refused.value.status in (403, 404)
        finally:
            api(browser, public, f"users/{scientist.name}/server", token, method="DELETE")
