"""Airflow's auth manager: the Keycloak provider's, with one fix for Keycloak 26.

Airflow loads it (``AIRFLOW__CORE__AUTH_MANAGER``) from the skiff package
installed in its venv and image; the CLI's own venv never imports it.

The provider (apache-airflow-providers-keycloak 0.11.2) answers a refused
password at ``POST /auth/token`` with 403 "Invalid credentials" only when
python-keycloak raises ``KeycloakAuthenticationError``, i.e. when Keycloak says
401. Keycloak 26 says 400 ``invalid_grant`` (wrong password, disabled account),
which python-keycloak raises as ``KeycloakPostError``, and the API server
answered 500. This subclass turns that answer into the 403 the provider means;
anything else stays a server error. See docs/decisions/0008-airflow-keycloak.md.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.keycloak.auth_manager.keycloak_auth_manager import (
    KeycloakAuthManager as ProviderKeycloakAuthManager,
)
from fastapi import Request
from fastapi.responses import JSONResponse
from keycloak.exceptions import KeycloakPostError


def refused_grant(exc: KeycloakPostError) -> bool:
    """Whether Keycloak refused a grant (credentials, account state), not failed."""
    return exc.response_code == 400 and b'"invalid_grant"' in (exc.response_body or b"")


async def _refused(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, KeycloakPostError) and refused_grant(exc):
        return JSONResponse(status_code=403, content={"detail": "Invalid credentials"})
    raise exc


class KeycloakAuthManager(ProviderKeycloakAuthManager):
    """The provider's Keycloak auth manager; its login routes answer a refused grant with 403."""

    def get_fastapi_app(self) -> Any:
        app = super().get_fastapi_app()
        if app is not None:
            app.add_exception_handler(KeycloakPostError, _refused)
        return app
