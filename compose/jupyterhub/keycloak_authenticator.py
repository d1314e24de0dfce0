"""GenericOAuthenticator whose logout also ends the Keycloak session.

OAuthenticator can only send a user to a fixed ``logout_redirect_url``; Keycloak
logs out without asking only when the request names the session's ID token
(``id_token_hint``), which is per user. So the logout handler reads it from the
user's auth state before the hub forgets them. Loaded by jupyterhub_config.py
(``c.JupyterHub.authenticator_class``); it imports JupyterHub and OAuthenticator,
so only the hub's environment can import it. It also carries a one-line fix of
JupyterHub 6.1.1 (below).
"""

from __future__ import annotations

from urllib.parse import urlencode

from jupyterhub.handlers.base import BaseHandler
from oauthenticator.generic import GenericOAuthenticator
from oauthenticator.oauth2 import OAuthLogoutHandler
from traitlets import Unicode

# JupyterHub 6.1.1's refresh_auth reads self._token_authenticated, which only
# token-authenticated requests set: when a browser's (cookie) session can no longer
# be refreshed, e.g. after a Keycloak logout, the request fails with an
# AttributeError traceback instead of going back to the login. The default the
# attribute should have had:
BaseHandler._token_authenticated = False


class KeycloakLogoutHandler(OAuthLogoutHandler):
    _id_token: str | None = None

    async def handle_logout(self) -> None:
        await super().handle_logout()
        # Still the user being logged out: the hub clears it only after this call.
        user = self.current_user
        if user is not None:
            auth_state = await user.get_auth_state() or {}
            self._id_token = auth_state.get("id_token")

    async def render_logout_page(self) -> None:
        self.redirect(self.authenticator.end_session_redirect(self._id_token))


class KeycloakAuthenticator(GenericOAuthenticator):
    logout_handler = KeycloakLogoutHandler

    end_session_url = Unicode(
        config=True, help="Keycloak's end_session endpoint (…/protocol/openid-connect/logout).")
    post_logout_redirect_url = Unicode(
        config=True, help="Where Keycloak sends the browser after logout (a registered URI).")

    def end_session_redirect(self, id_token: str | None) -> str:
        params = {"client_id": self.client_id,
                  "post_logout_redirect_uri": self.post_logout_redirect_url}
        if id_token:
            params["id_token_hint"] = id_token
        return f"{self.end_session_url}?{urlencode(params)}"
