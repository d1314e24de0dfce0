"""The portal's configuration, from environment variables.

The native launcher (skiff.services.portal) and docker-compose.yml set the same
names. Two Keycloak addresses: browsers are sent to the public one (the issuer's
host), the portal itself calls the internal one (token endpoint, JWKS).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

# The realm roles that mean something on this platform (compose/keycloak/realm-skiff.json);
# Keycloak's own (default-roles-*, offline_access, uma_authorization) are not shown.
PLATFORM_ROLES = ("admin", "data-engineer", "data-scientist", "citizen", "viewer")


class ConfigError(RuntimeError):
    """A required variable is missing; the message names it."""


@dataclass(frozen=True)
class Config:
    public_url: str
    issuer: str
    keycloak_internal_url: str
    realm: str
    client_secret: str
    cookie_secret: str
    session_db: Path
    client_id: str = "portal"
    # Bearer tokens (API clients of MLflow) must be meant for one of these.
    bearer_audiences: tuple[str, ...] = ("mlflow", "portal")
    # Keycloak's realm defaults: SSO idle 30 min, max 10 h (realm-skiff.json).
    session_idle_seconds: int = 1800
    session_max_seconds: int = 36000
    # Internal base URLs of the services the landing page lists (SKIFF_*_URL).
    upstreams: dict[str, str] = field(default_factory=dict)
    health_timeout: float = 2.0

    @property
    def public_host(self) -> str:
        """``host[:port]`` of the public URL: what the browser's Host header says."""
        return self.public_url.split("://", 1)[1].rstrip("/")

    @property
    def redirect_uri(self) -> str:
        return f"{self.public_url}/oauth2/callback"

    @property
    def authorize_endpoint(self) -> str:
        return f"{self.issuer}/protocol/openid-connect/auth"

    @property
    def end_session_endpoint(self) -> str:
        return f"{self.issuer}/protocol/openid-connect/logout"

    @property
    def token_endpoint(self) -> str:
        return f"{self.keycloak_internal_url}/realms/{self.realm}/protocol/openid-connect/token"

    @property
    def jwks_uri(self) -> str:
        return f"{self.keycloak_internal_url}/realms/{self.realm}/protocol/openid-connect/certs"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        env = os.environ if env is None else env

        def need(name: str) -> str:
            value = env.get(name, "").strip()
            if not value:
                raise ConfigError(f"portal: {name} is not set (skiff.services.portal and "
                                  "docker-compose.yml set it)")
            return value

        public_url = need("PORTAL_PUBLIC_URL").rstrip("/")
        realm = env.get("KEYCLOAK_REALM", "skiff")
        return cls(
            public_url=public_url,
            issuer=env.get("KEYCLOAK_ISSUER", f"{public_url}/auth/realms/{realm}").rstrip("/"),
            keycloak_internal_url=need("KEYCLOAK_INTERNAL_URL").rstrip("/"),
            realm=realm,
            client_id=env.get("PORTAL_CLIENT_ID", cls.client_id),
            client_secret=need("PORTAL_CLIENT_SECRET"),
            cookie_secret=need("PORTAL_COOKIE_SECRET"),
            session_db=Path(need("PORTAL_SESSION_DB")),
            bearer_audiences=tuple(a.strip() for a in env.get(
                "PORTAL_BEARER_AUDIENCES", ",".join(cls.bearer_audiences)).split(",") if a.strip()),
            session_idle_seconds=int(env.get("PORTAL_SESSION_IDLE_SECONDS", cls.session_idle_seconds)),
            session_max_seconds=int(env.get("PORTAL_SESSION_MAX_SECONDS", cls.session_max_seconds)),
            upstreams={k: v.rstrip("/") for k, v in env.items()
                       if k.startswith("SKIFF_") and k.endswith("_URL") and v},
        )
