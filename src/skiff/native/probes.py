"""Readiness probes shared by several services."""

from __future__ import annotations

import httpx

from skiff.native.spec import NotReady


def http_ok(url: str, timeout: float = 3) -> None:
    """NotReady unless GET ``url`` answers 200."""
    try:
        resp = httpx.get(url, timeout=timeout)
    except httpx.HTTPError as exc:
        raise NotReady(f"{type(exc).__name__}: {exc}") from exc
    if resp.status_code != 200:
        raise NotReady(f"{httpx.URL(url).path} answered {resp.status_code}")
