"""The portal as Keycloak's OIDC client ``portal``: authorization code flow with PKCE (Authlib).

The browser is sent to the public authorization endpoint; the code is
exchanged at the internal token endpoint (client secret in the Basic header).
The ID token must be for ``portal`` with our nonce; roles and groups come from
the access token (Keycloak puts ``realm_access`` there). The access and refresh
tokens are kept with the session; ``refresh`` renews the access token.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode

import requests
from authlib.common.security import generate_token
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session

from serving.portal.config import Config
from serving.portal.sessions import Identity, Tokens
from serving.portal.tokens import InvalidToken, Verifier, groups, realm_roles

SCOPE = "openid profile email"


class LoginError(Exception):
    """The code could not be turned into a session; the message is safe to show."""


class RefreshRefused(Exception):
    """Keycloak refused the refresh token (session ended there, or it expired)."""


class KeycloakUnavailable(Exception):
    """Keycloak could not be asked; the session is kept, the request fails for now."""


def session_tokens(token: dict[str, Any], access: dict[str, Any]) -> Tokens:
    """Our record of a token endpoint answer; ``access``: the access token's verified
    claims, whose ``exp`` says when it expires. ``refresh_expires_in`` 0 means an
    offline token (no idle expiry); then the session's own maximum age bounds it."""
    refresh_in = float(token.get("refresh_expires_in") or 0) or 10 * 365 * 86400.0
    return Tokens(access=token["access_token"], refresh=token.get("refresh_token", ""),
                  access_expires=float(access["exp"]), refresh_expires=time.time() + refresh_in)


@dataclass(frozen=True)
class PendingLogin:
    """What the browser keeps (signed, in a cookie) between leaving and coming back."""

    state: str
    nonce: str
    code_verifier: str
    return_to: str

    def dump(self) -> dict[str, str]:
        return {"s": self.state, "n": self.nonce, "v": self.code_verifier, "r": self.return_to}

    @classmethod
    def load(cls, doc: dict[str, str]) -> PendingLogin:
        return cls(doc["s"], doc["n"], doc["v"], doc["r"])


class Keycloak:
    def __init__(self, config: Config, verifier: Verifier,
                 adapter: requests.adapters.BaseAdapter | None = None) -> None:
        self.config = config
        self.verifier = verifier
        # Tests mount a fake token endpoint here.
        self._adapter = adapter

    def _client(self) -> OAuth2Session:
        c = self.config
        client = OAuth2Session(c.client_id, c.client_secret, scope=SCOPE, redirect_uri=c.redirect_uri,
                               code_challenge_method="S256",
                               token_endpoint_auth_method="client_secret_basic")
        if self._adapter is not None:
            client.mount("http://", self._adapter)
            client.mount("https://", self._adapter)
        return client

    def start(self, return_to: str) -> tuple[str, PendingLogin]:
        """The authorization URL to send the browser to, and what to remember."""
        pending = PendingLogin(state=generate_token(32), nonce=generate_token(32),
                               code_verifier=generate_token(64), return_to=return_to)
        with self._client() as client:
            url, _ = client.create_authorization_url(
                self.config.authorize_endpoint, state=pending.state,
                code_verifier=pending.code_verifier, nonce=pending.nonce)
        return url, pending

    def finish(self, code: str, pending: PendingLogin) -> tuple[Identity, Tokens]:
        """Exchange the code, check the tokens, and say who logged in (and their tokens)."""
        try:
            with self._client() as client:
                token: dict[str, Any] = client.fetch_token(
                    self.config.token_endpoint, grant_type="authorization_code", code=code,
                    code_verifier=pending.code_verifier, timeout=10)
        except (OAuthError, requests.RequestException, ValueError) as exc:
            raise LoginError(f"Keycloak refused the login code: {exc}") from exc
        if "id_token" not in token or "access_token" not in token:
            raise LoginError("Keycloak's answer holds no ID token (is the scope openid allowed?)")
        try:
            id_claims = self.verifier.verify(token["id_token"], audiences=[self.config.client_id])
            access = self.verifier.verify(token["access_token"])
        except InvalidToken as exc:
            raise LoginError(f"Keycloak's tokens did not check out: {exc}") from exc
        if id_claims.get("nonce") != pending.nonce:
            raise LoginError("the ID token's nonce is not this login's")
        if id_claims.get("sub") != access.get("sub"):
            raise LoginError("the ID and access tokens name different users")
        return (replace(identity(access, id_claims, id_token=token["id_token"]),
                        access_token=token["access_token"]), session_tokens(token, access))

    def refresh(self, tokens: Tokens) -> Tokens:
        """New tokens for a session (refresh grant); :class:`RefreshRefused` when Keycloak
        says no, :class:`KeycloakUnavailable` when it cannot be asked."""
        if not tokens.refresh:
            raise RefreshRefused("the session holds no refresh token")
        try:
            with self._client() as client:
                token: dict[str, Any] = client.fetch_token(
                    self.config.token_endpoint, grant_type="refresh_token",
                    refresh_token=tokens.refresh, timeout=10)
        except OAuthError as exc:
            raise RefreshRefused(f"Keycloak refused the refresh token: {exc}") from exc
        except (requests.RequestException, ValueError) as exc:
            raise KeycloakUnavailable(f"cannot reach Keycloak's token endpoint: "
                                      f"{type(exc).__name__}: {exc}") from exc
        if "access_token" not in token:
            raise RefreshRefused("Keycloak's refresh answer holds no access token")
        try:
            access = self.verifier.verify(token["access_token"])
        except InvalidToken as exc:
            raise RefreshRefused(f"the refreshed access token did not check out: {exc}") from exc
        if not token.get("refresh_token"):
            # Keycloak keeps the old refresh token valid when it does not send a new one.
            token["refresh_token"] = tokens.refresh
        return session_tokens(token, access)

    def logout_url(self, id_token: str | None) -> str:
        """Keycloak's end-session endpoint, coming back to the portal's front page."""
        params = {"client_id": self.config.client_id,
                  "post_logout_redirect_uri": f"{self.config.public_url}/"}
        if id_token:
            params["id_token_hint"] = id_token
        return f"{self.config.end_session_endpoint}?{urlencode(params)}"


def identity(access: dict[str, Any], id_claims: dict[str, Any] | None = None,
             id_token: str = "") -> Identity:
    """Who the tokens speak for: names from the ID token (or the access token), roles
    and groups from the access token."""
    who = id_claims or access
    username = who.get("preferred_username") or access.get("preferred_username") or \
        access.get("azp") or who["sub"]
    return Identity(
        sub=str(who["sub"]), username=str(username), email=str(who.get("email") or ""),
        roles=tuple(realm_roles(access)), groups=tuple(groups(access) or groups(who)),
        sid=who.get("sid") or access.get("sid"), id_token=id_token)
