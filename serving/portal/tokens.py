"""Checking Keycloak's tokens: signature (the realm's JWKS), issuer, audience, time.

The JWKS comes from Keycloak's internal address and is cached; a token signed
with a key id we do not know yet makes us fetch it again (Keycloak rotates keys),
at most once every ``refresh_floor`` seconds so garbage tokens cannot make us
hammer Keycloak. The issuer is always the public one (settings.keycloak_issuer),
whichever address the token was obtained from.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any

import httpx
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

# Keycloak signs with RS256 by default; never "none" or a symmetric algorithm.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "ES256", "ES384")
BACKCHANNEL_LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"
LEEWAY = 30


class InvalidToken(Exception):
    """The token is not one of ours, or no longer valid; the message says why."""


class Jwks:
    """The realm's signing keys, fetched from ``uri`` and cached."""

    def __init__(self, uri: str, fetch: Callable[[str], Mapping[str, Any]] | None = None,
                 max_age: float = 3600.0, refresh_floor: float = 10.0) -> None:
        self.uri = uri
        self._fetch = fetch or _http_json
        self.max_age = max_age
        self.refresh_floor = refresh_floor
        self._keys: KeySet | None = None
        self._fetched_at = 0.0
        self._lock = threading.Lock()

    def keys(self, force: bool = False) -> KeySet:
        with self._lock:
            age = time.monotonic() - self._fetched_at
            stale = self._keys is None or age >= self.max_age
            if stale or (force and age >= self.refresh_floor):
                try:
                    self._keys = KeySet.import_key_set(dict(self._fetch(self.uri)))  # type: ignore[arg-type]
                except (httpx.HTTPError, ValueError, JoseError) as exc:
                    if self._keys is None:
                        raise InvalidToken(f"cannot fetch Keycloak's keys from {self.uri}: "
                                           f"{type(exc).__name__}: {exc}") from exc
                else:
                    self._fetched_at = time.monotonic()
            assert self._keys is not None
            return self._keys


def _http_json(url: str) -> Mapping[str, Any]:
    resp = httpx.get(url, timeout=5)
    resp.raise_for_status()
    return resp.json()  # type: ignore[no-any-return]


class Verifier:
    """Checks tokens of one realm: ``verify`` for access and ID tokens, ``logout_token``."""

    def __init__(self, jwks: Jwks, issuer: str, now: Callable[[], float] = time.time) -> None:
        self.jwks = jwks
        self.issuer = issuer
        self.now = now

    def _decode(self, token: str) -> dict[str, Any]:
        if not token or token.count(".") != 2:
            raise InvalidToken("not a JWT")
        for force in (False, True):
            try:
                decoded = jwt.decode(token, self.jwks.keys(force=force), algorithms=list(ALGORITHMS))
            except InvalidKeyIdError:
                # An unknown key id may be a key Keycloak rotated in: fetch the keys again once.
                continue
            except JoseError as exc:
                raise InvalidToken(f"bad token: {exc}") from exc
            except ValueError as exc:
                raise InvalidToken(f"bad token: {exc}") from exc
            return dict(decoded.claims)
        raise InvalidToken("signed with a key Keycloak does not publish")

    def _check_common(self, claims: dict[str, Any], audiences: Collection[str] | None) -> None:
        registry = jwt.JWTClaimsRegistry(
            now=lambda: int(self.now()), leeway=LEEWAY,
            iss={"essential": True, "value": self.issuer})
        try:
            registry.validate(claims)
        except JoseError as exc:
            raise InvalidToken(f"{exc}") from exc
        if audiences is not None:
            aud = claims.get("aud")
            held = {aud} if isinstance(aud, str) else set(aud or [])
            if not held & set(audiences):
                raise InvalidToken(f"audience {sorted(held)} is none of {sorted(audiences)}")

    def verify(self, token: str, audiences: Collection[str] | None = None,
               require_exp: bool = True) -> dict[str, Any]:
        """The claims of a valid token meant (``aud``) for one of ``audiences``, if given."""
        claims = self._decode(token)
        if require_exp and "exp" not in claims:
            raise InvalidToken("token without expiry")
        self._check_common(claims, audiences)
        return claims

    def logout_token(self, token: str, client_id: str) -> dict[str, Any]:
        """A back-channel logout token (OpenID Connect Back-Channel Logout 1.0, section 2.6)."""
        claims = self._decode(token)
        self._check_common(claims, [client_id])
        if "iat" not in claims:
            raise InvalidToken("logout token without iat")
        events = claims.get("events")
        if not isinstance(events, dict) or BACKCHANNEL_LOGOUT_EVENT not in events:
            raise InvalidToken("not a back-channel logout token (events claim)")
        if not (claims.get("sid") or claims.get("sub")):
            raise InvalidToken("logout token names neither sid nor sub")
        # A nonce would make it an ID token replayed as a logout token.
        if "nonce" in claims:
            raise InvalidToken("logout token carries a nonce")
        return claims


def realm_roles(claims: Mapping[str, Any]) -> list[str]:
    access = claims.get("realm_access") or {}
    roles = access.get("roles") if isinstance(access, Mapping) else None
    return [r for r in roles or [] if isinstance(r, str)]


def groups(claims: Mapping[str, Any]) -> list[str]:
    # Keycloak's group mapper with full.path=false gives names; strip a "/" anyway.
    return [g.lstrip("/") for g in claims.get("groups") or [] if isinstance(g, str)]
