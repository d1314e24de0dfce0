"""Keycloak access tokens of the platform's realm, verified against its JWKS (PyJWT).

Shared by the model API (serving/model_server/auth.py: audience ``model-api``,
verified tokens cached), and the catalog and the notification service
(:meth:`RealmTokens.user`: any audience, a person's token issued by one of the
platform's clients, checked through ``azp``). A token passes when its

- issuer is the realm's public issuer, checked first, from the unverified claims,
  so a foreign token never makes us fetch keys;
- signature verifies with a key of the realm's JWKS (the internal address),
  cached, and fetched again when a token names a key id we do not know (Keycloak
  rotated its keys), at most once per ``refresh_cooldown`` so a flood of made-up
  key ids cannot turn into a flood of calls to Keycloak;
- ``exp`` is in the future (``LEEWAY`` seconds of clock skew) and, when an
  audience is asked for, ``aud`` contains it;
- it is an access token (Keycloak's ``typ`` claim ``Bearer``): an ID token proves
  a login to the client that asked for it, not a right to call an API, and a
  refresh token is for Keycloak alone.

Anything else raises :class:`TokenRejected` whose code names the problem; each
service turns it into its own error answer.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import jwt
from jwt import PyJWKClient

# Keycloak signs with RS256 unless the realm is told otherwise; never accept "none"/HS*.
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "ES256"]
# Seconds of clock difference tolerated between Keycloak and us.
LEEWAY = 5
# Seconds a fetched key set is trusted, and the least time between two fetches
# caused by unknown key ids.
JWKS_LIFESPAN = 3600
REFRESH_COOLDOWN = 30.0
# Keycloak's "typ" claim of access tokens (ID tokens say "ID", refresh tokens "Refresh").
ACCESS_TOKEN = "Bearer"


class TokenRejected(Exception):
    """Why a token was refused: an HTTP status (401, or 503 without keys), a code, a message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class RealmTokens:
    """Verifies one issuer's tokens; safe to share between threads."""

    def __init__(self, issuer: str, jwks_url: str, audience: str | None = None,
                 refresh_cooldown: float = REFRESH_COOLDOWN) -> None:
        self.issuer = issuer
        self.audience = audience
        # PyJWKClient caches the key set and fetches it again for an unknown kid.
        self.jwks = PyJWKClient(jwks_url, cache_jwk_set=True, lifespan=JWKS_LIFESPAN,
                                timeout=10, cooldown_duration=refresh_cooldown)

    def verify(self, token: str) -> dict[str, Any]:
        """The token's verified claims, or :class:`TokenRejected` naming what is wrong."""
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.DecodeError as exc:
            raise TokenRejected(401, "malformed_token", f"not a JWT: {exc}") from exc
        issuer = unverified.get("iss")
        if issuer != self.issuer:
            raise TokenRejected(401, "wrong_issuer", f"token issued by {issuer!r}; this API "
                                f"accepts tokens of {self.issuer}")
        if header.get("alg") not in ALGORITHMS:
            raise TokenRejected(401, "bad_signature",
                                f"signing algorithm {header.get('alg')!r} refused")
        try:
            key = self.jwks.get_signing_key(header.get("kid") or "")
        except jwt.PyJWKClientConnectionError as exc:
            raise TokenRejected(503, "keys_unavailable",
                                f"cannot fetch the realm's signing keys: {exc}") from exc
        except jwt.PyJWKClientError as exc:
            raise TokenRejected(401, "bad_signature", f"token signed with a key the realm does "
                                f"not publish ({exc})") from exc
        required = ["exp", "iat", "iss", *(["aud"] if self.audience else [])]
        try:
            claims: dict[str, Any] = jwt.decode(token, key.key, algorithms=ALGORITHMS, issuer=self.issuer,
                              audience=self.audience, leeway=LEEWAY,
                              options={"require": required, "verify_aud": bool(self.audience)})
        except jwt.ExpiredSignatureError as exc:
            raise TokenRejected(401, "token_expired",
                                "the token has expired; fetch a new one") from exc
        except jwt.InvalidAudienceError as exc:
            raise TokenRejected(401, "wrong_audience", f"the token is not for {self.audience!r} "
                                f"(aud {unverified.get('aud')!r})") from exc
        except jwt.InvalidIssuerError as exc:
            raise TokenRejected(401, "wrong_issuer", str(exc)) from exc
        except jwt.InvalidSignatureError as exc:
            raise TokenRejected(401, "bad_signature",
                                "the token's signature does not verify") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise TokenRejected(401, "invalid_token", str(exc)) from exc
        except jwt.InvalidTokenError as exc:
            raise TokenRejected(401, "invalid_token", f"{type(exc).__name__}: {exc}") from exc
        if claims.get("typ") != ACCESS_TOKEN:
            raise TokenRejected(401, "not_an_access_token",
                                f"a token of type {claims.get('typ')!r}; send an access token "
                                f"(typ {ACCESS_TOKEN!r}), not an ID or refresh token")
        return claims

    def user(self, header: str | None, clients: Collection[str],
             api: str = "this API") -> tuple[str, dict[str, Any]]:
        """The user (``preferred_username``) and verified claims of an ``Authorization:
        Bearer`` header whose token one of ``clients`` obtained (``azp``); ``api`` names
        the service in the refusal."""
        claims = self.verify(bearer(header))
        if claims.get("azp") not in clients:
            raise TokenRejected(401, "wrong_client", f"token obtained by client "
                                f"{claims.get('azp')!r}; {api} accepts those of {', '.join(clients)}")
        user = claims.get("preferred_username")
        if not isinstance(user, str) or not user:
            raise TokenRejected(401, "invalid_token", "the token names no user (preferred_username)")
        return user, claims


def bearer(header: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header."""
    if not header:
        raise TokenRejected(401, "unauthorized", "send `Authorization: Bearer <token>`, a "
                            "Keycloak access token of the platform's realm")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise TokenRejected(401, "unauthorized", "the Authorization header is not `Bearer <token>`")
    return token.strip()
