"""Who is calling: a Keycloak access token of realm skiff, checked against its JWKS.

Accepted: ``Authorization: Bearer <JWT>`` of the realm, verified by
serving/realm_tokens.py (issuer, signature, expiry), and obtained by one of the
platform's clients (``azp``). Audience is not checked: user tokens of the
portal, JupyterHub or Airflow carry whatever audience their client maps, and
``azp`` is what says which front door issued them.

The caller is ``preferred_username``; teams are the ``groups`` claim (Keycloak's
group-membership mapper, full path off, so no leading slash); roles are
``realm_access.roles``. Role ``admin`` and the service account are admins here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from serving.catalog.config import Config
from serving.catalog.errors import ApiError
from serving.realm_tokens import RealmTokens, TokenRejected


@dataclass(frozen=True)
class Caller:
    user: str
    teams: tuple[str, ...]
    roles: tuple[str, ...]
    service: bool = False

    @property
    def admin(self) -> bool:
        return self.service or "admin" in self.roles

    def in_team(self, team: str | None) -> bool:
        return team is not None and team in self.teams

    def as_json(self) -> dict[str, Any]:
        return {"user": self.user, "teams": list(self.teams), "roles": list(self.roles),
                "admin": self.admin, "service": self.service}


class TokenValidator:
    def __init__(self, config: Config) -> None:
        self.config = config
        # No audience: user tokens of the portal, JupyterHub or Airflow carry whatever
        # audience their client maps; azp says which front door issued them.
        self.realm = RealmTokens(config.issuer, config.jwks_url)

    def caller(self, header: str | None) -> Caller:
        try:
            user, claims = self.realm.user(header, self.config.clients, api="the catalog")
        except TokenRejected as exc:
            raise ApiError(exc.status, exc.code, exc.message) from exc
        groups = claims.get("groups") or []
        teams = tuple(sorted({str(g).lstrip("/") for g in groups if isinstance(g, str)}))
        roles = tuple((claims.get("realm_access") or {}).get("roles") or ())
        return Caller(user=user, teams=teams, roles=roles,
                      service=user in self.config.service_users)
