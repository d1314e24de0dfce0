"""Who is calling: a Keycloak access token of realm skiff, checked against its JWKS.

Accepted: ``Authorization: Bearer <JWT>`` issued by the realm (public issuer),
signed with a key of the realm's JWKS (fetched at the internal address, cached,
fetched again for an unknown key id), not expired, and obtained by one of the
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

import jwt
from jwt import PyJWKClient

from serving.catalog.config import Config
from serving.catalog.errors import ApiError

ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "ES256"]
LEEWAY = 5
JWKS_LIFESPAN = 3600
REFRESH_COOLDOWN = 30.0


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


def unauthorized(code: str, message: str) -> ApiError:
    return ApiError(401, code, message)


class TokenValidator:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.jwks = PyJWKClient(config.jwks_url, cache_jwk_set=True, lifespan=JWKS_LIFESPAN,
                                timeout=10, cooldown_duration=REFRESH_COOLDOWN)

    def caller(self, header: str | None) -> Caller:
        claims = self.claims(self.bearer(header))
        user = claims.get("preferred_username")
        if not isinstance(user, str) or not user:
            raise unauthorized("invalid_token", "the token names no user (preferred_username)")
        groups = claims.get("groups") or []
        teams = tuple(sorted({str(g).lstrip("/") for g in groups if isinstance(g, str)}))
        roles = tuple((claims.get("realm_access") or {}).get("roles") or ())
        return Caller(user=user, teams=teams, roles=roles,
                      service=user in self.config.service_users)

    @staticmethod
    def bearer(header: str | None) -> str:
        if not header:
            raise unauthorized("unauthorized", "send `Authorization: Bearer <token>`, a Keycloak "
                               "access token of the platform's realm")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise unauthorized("unauthorized", "the Authorization header is not `Bearer <token>`")
        return token.strip()

    def claims(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.DecodeError as exc:
            raise unauthorized("malformed_token", f"not a JWT: {exc}") from exc
        # Issuer first, from the unverified claims: a foreign token never makes us fetch keys.
        if unverified.get("iss") != self.config.issuer:
            raise unauthorized("wrong_issuer", f"token issued by {unverified.get('iss')!r}; the "
                               f"catalog accepts tokens of {self.config.issuer}")
        if header.get("alg") not in ALGORITHMS:
            raise unauthorized("bad_signature", f"signing algorithm {header.get('alg')!r} refused")
        try:
            key = self.jwks.get_signing_key(header.get("kid") or "")
        except jwt.PyJWKClientConnectionError as exc:
            raise ApiError(503, "keys_unavailable",
                           f"cannot fetch the realm's signing keys: {exc}") from exc
        except jwt.PyJWKClientError as exc:
            raise unauthorized("bad_signature", f"token signed with a key the realm does not "
                               f"publish ({exc})") from exc
        try:
            claims = jwt.decode(token, key.key, algorithms=ALGORITHMS, issuer=self.config.issuer,
                                leeway=LEEWAY, options={"require": ["exp", "iat", "iss"],
                                                        "verify_aud": False})
        except jwt.ExpiredSignatureError as exc:
            raise unauthorized("token_expired", "the token has expired; fetch a new one") from exc
        except jwt.InvalidSignatureError as exc:
            raise unauthorized("bad_signature", "the token's signature does not verify") from exc
        except jwt.InvalidTokenError as exc:
            raise unauthorized("invalid_token", f"{type(exc).__name__}: {exc}") from exc
        if claims.get("azp") not in self.config.clients:
            raise unauthorized("wrong_client", f"token obtained by client {claims.get('azp')!r}; "
                               f"the catalog accepts those of {', '.join(self.config.clients)}")
        return claims
