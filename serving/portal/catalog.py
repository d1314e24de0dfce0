"""At login, tell the catalog who signed in: its ``GET /api/v1/me`` provisions the
user's data sources (their S3 store, their teams' stores) on first sight.

Fire and forget, on a thread: a slow or absent catalog never delays or fails a
login; what went wrong is logged, and the next login (or ``skiff users add``)
tries again.
"""

from __future__ import annotations

import logging
import threading

import httpx

log = logging.getLogger("serving.portal.catalog")

# The upstream variable of the catalog (skiff.services.traefik.upstreams, Compose's x-upstreams).
UPSTREAM = "SKIFF_CATALOG_URL"


def announce(base_url: str, access_token: str, username: str, timeout: float = 30.0) -> bool:
    """Call the catalog as the user; True when it answered 200. Never raises."""
    try:
        resp = httpx.get(f"{base_url.rstrip('/')}/api/v1/me", timeout=timeout,
                         headers={"Authorization": f"Bearer {access_token}"})
    except httpx.HTTPError as exc:
        log.warning("catalog: provisioning %s at login failed: %s: %s", username,
                    type(exc).__name__, exc)
        return False
    if resp.status_code != 200:
        log.warning("catalog: provisioning %s at login: HTTP %d %s", username,
                    resp.status_code, resp.text[:300])
        return False
    return True


def announce_in_background(base_url: str | None, access_token: str,
                           username: str) -> threading.Thread | None:
    if not base_url or not access_token:
        return None
    thread = threading.Thread(target=announce, args=(base_url, access_token, username),
                              name=f"catalog-login-{username}", daemon=True)
    thread.start()
    return thread
