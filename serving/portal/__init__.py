"""The portal: the platform's web console and Traefik's forward-auth (Flask under gunicorn).

It is Keycloak's ``portal`` client. People log in once through Keycloak (the
authorization code flow with PKCE); the portal keeps a server-side session per
browser, keyed by Keycloak's session id (``sid``), so a logout anywhere in
Keycloak ends it through the back-channel logout. Traefik asks ``/oauth2/auth``
before every request to MLflow, Prometheus and its own dashboard, and
``/oauth2/auth?bearer=1`` before every request to the notification service's API
(the session's access token, kept encrypted and refreshed, becomes a bearer token).
The console's pages (``console``) read the catalog, the notification service and
MLflow as the signed-in user (``apis``); charts are inline SVG (``charts``), the one
script is served from ``static``.

``config``, ``sessions``, ``tokens`` and ``services`` import neither Flask nor
Authlib; ``app`` and ``oidc`` need the serving venv (or the dev extras).
"""
