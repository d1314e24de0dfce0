"""Bearer tokens of the model API: only Keycloak's, for the model API, still valid.

A request must carry ``Authorization: Bearer <JWT>`` whose

- issuer is the realm's public issuer (``AUTH_ISSUER``), checked first, from the
  unverified claims, so a foreign token never makes us fetch keys;
- signature verifies with a key of the realm's JWKS (``AUTH_JWKS_URL``, the
  internal address), cached, and fetched again when a token names a key id we
  do not know (Keycloak rotated its keys), at most once per ``REFRESH_COOLDOWN``
  so a flood of made-up key ids cannot turn into a flood of calls to Keycloak;
- ``exp`` is in the future and ``aud`` contains ``AUTH_AUDIENCE`` (``model-api``,
  which the devices' client adds to its tokens).

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

import jwt
from jwt import PyJWKClient

from serving.model_server.api import ApiError

# Paths that answer without a token.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
# Keycloak signs with RS256 unless the realm is told otherwise; never accept "none"/HS*.
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "ES256"]
# Seconds of clock difference tolerated between Keycloak and us.
LEEWAY = 5
# Seconds a fetched key set is trusted, and the least time between two fetches
# caused by unknown key ids.
JWKS_LIFESPAN = 3600
REFRESH_COOLDOWN = 30.0
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
        # PyJWKClient caches the key set and fetches it again for an unknown kid.
        self.jwks = PyJWKClient(config.jwks_url, cache_jwk_set=True, lifespan=JWKS_LIFESPAN,
                                timeout=10, cooldown_duration=refresh_cooldown)
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
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.DecodeError as exc:
            raise unauthorized("malformed_token", f"not a JWT: {exc}") from exc
        issuer = unverified.get("iss")
        if issuer != self.config.issuer:
            raise unauthorized("wrong_issuer", f"token issued by {issuer!r}; this API accepts "
                               f"tokens of {self.config.issuer}")
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
            return jwt.decode(
                token, key.key, algorithms=ALGORITHMS, issuer=self.config.issuer,
                audience=self.config.audience, leeway=LEEWAY,
                options={"require": ["exp", "iat", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise unauthorized("token_expired", "the token has expired; fetch a new one") from exc
        except jwt.InvalidAudienceError as exc:
            raise unauthorized("wrong_audience", f"the token is not for {self.config.audience!r} "
                               f"(aud {unverified.get('aud')!r})") from exc
        except jwt.InvalidIssuerError as exc:
            raise unauthorized("wrong_issuer", str(exc)) from exc
        except jwt.InvalidSignatureError as exc:
            raise unauthorized("bad_signature", "the token's signature does not verify") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise unauthorized("invalid_token", str(exc)) from exc
        except jwt.InvalidTokenError as exc:
            raise unauthorized("invalid_token", f"{type(exc).__name__}: {exc}") from exc

    def check(self, path: str, header: str | None) -> dict[str, Any] | None:
        """Claims of the request's token, None for an open path; raises a 401 otherwise."""
        if path in OPEN_PATHS:
            return None
        return self.validate(self.bearer(header))
