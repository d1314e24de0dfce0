"""Bearer tokens of the model API: only Keycloak's, for the model API, still valid.

A request must carry ``Authorization: Bearer <JWT>``, a token of the realm
(``AUTH_ISSUER``, keys from ``AUTH_JWKS_URL``) whose ``aud`` contains
``AUTH_AUDIENCE`` (``model-api``, which the devices' client adds to its tokens),
verified by serving/realm_tokens.py.

Anything else is a 401 whose JSON error code names the problem. Health and
metrics stay open: probes and Prometheus hold no token.

A device sends the same token for minutes; the signature check and decoding cost
about a third of a one-record request's CPU, so the claims of a token that
verified are kept (bounded) and that token passes again until its ``exp``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from serving.model_server.api import ApiError
from serving.realm_tokens import LEEWAY, REFRESH_COOLDOWN, RealmTokens, TokenRejected

# Paths that answer without a token.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
# Verified tokens remembered; a fleet of this many devices never re-verifies.
VERIFIED_CACHE_SIZE = 4096


@dataclass(frozen=True)
class AuthConfig:
    issuer: str
    jwks_url: str
    audience: str = "model-api"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AuthConfig:
        env = os.environ if env is None else env
        missing = [k for k in ("AUTH_ISSUER", "AUTH_JWKS_URL") if not env.get(k)]
        if missing:
            # Failing closed: a model server without a token check is not started.
            raise RuntimeError(f"model server: {', '.join(missing)} not set; the model API "
                               "accepts only Keycloak tokens and needs to know the realm")
        return cls(issuer=env["AUTH_ISSUER"], jwks_url=env["AUTH_JWKS_URL"],
                   audience=env.get("AUTH_AUDIENCE") or cls.audience)


def unauthorized(code: str, message: str) -> ApiError:
    return ApiError(401, code, message)


class TokenValidator:
    """Checks bearer tokens against one issuer's JWKS; safe to share between threads."""

    def __init__(self, config: AuthConfig, refresh_cooldown: float = REFRESH_COOLDOWN) -> None:
        self.config = config
        self.realm = RealmTokens(config.issuer, config.jwks_url, audience=config.audience,
                                 refresh_cooldown=refresh_cooldown)
        self.jwks = self.realm.jwks
        self._verified: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def bearer(self, header: str | None) -> str:
        if not header:
            raise unauthorized("missing_token", "send `Authorization: Bearer <token>`, a Keycloak "
                               "access token (client credentials of the devices' client)")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise unauthorized("missing_token", "the Authorization header is not `Bearer <token>`")
        return token.strip()

    def validate(self, token: str) -> dict[str, Any]:
        """The token's verified claims, or an :class:`ApiError` 401 naming what is wrong."""
        claims = self._verified.get(token)
        if claims is not None and claims["exp"] + LEEWAY > time.time():
            return dict(claims)
        # Unknown, or expired since: the full check decides (and names the refusal).
        claims = self._verify(token)
        with self._lock:
            if len(self._verified) >= VERIFIED_CACHE_SIZE:
                # Expired tokens pile up otherwise; starting over costs one check per device.
                self._verified.clear()
            self._verified[token] = claims
        return dict(claims)

    def _verify(self, token: str) -> dict[str, Any]:
        try:
            return self.realm.verify(token)
        except TokenRejected as exc:
            raise ApiError(exc.status, exc.code, exc.message) from exc

    def check(self, path: str, header: str | None) -> dict[str, Any] | None:
        """Claims of the request's token, None for an open path; raises a 401 otherwise."""
        if path in OPEN_PATHS:
            return None
        return self.validate(self.bearer(header))
