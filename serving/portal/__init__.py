"""The portal: the platform's landing page and Traefik's forward-auth (Flask under gunicorn).

It is Keycloak's ``portal`` client. People log in once through Keycloak (the
authorization code flow with PKCE); the portal keeps a server-side session per
browser, keyed by Keycloak's session id (``sid``), so a logout anywhere in
Keycloak ends it through the back-channel logout. Traefik asks ``/oauth2/auth``
before every request to MLflow and to its own dashboard.

``config``, ``sessions``, ``tokens`` and ``services`` import neither Flask nor
Authlib; ``app`` and ``oidc`` need the serving venv (or the dev extras).
"""
