"""The console on the real stack, as a signed-in user of the real Keycloak: through
Traefik, with the portal's session cookie only (no token of the test's own).

The events a run shows are emitted with skiff.events (Kafka), stored by the
notification service and reached through Traefik's bearer forward-auth: the
browser's session becomes the user's access token (/oauth2/auth?bearer=1).
"""

from __future__ import annotations

import json
import re
import ssl
import struct
import time
import uuid
import zlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from skiff import events, keycloak
from skiff.native.context import Context
from skiff.services import REGISTRY
from tests.integration.test_gateway import API, BROWSER, browser_login

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def console(stack: Context) -> Context:
    for name in ("traefik", "portal", "keycloak", "catalog", "notifications", "kafka"):
        if name not in REGISTRY:
            pytest.skip(f"{name} is not in skiff.services.REGISTRY yet")
    return stack


@pytest.fixture(scope="module")
def trust(console: Context) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(console.root / "certs" / "ca.crt"))


@pytest.fixture(scope="module")
def user(console: Context) -> Iterator[tuple[str, str]]:
    """A fresh data scientist: (name, password)."""
    admin = keycloak.admin_client(console.settings)
    name = f"console-{uuid.uuid4().hex[:8]}"
    password = keycloak.create_user(console.settings, name, "data-scientist", "console-tests",
                                    admin=admin)
    try:
        yield name, password
    finally:
        found = keycloak.find_user(admin, name)
        if found:
            admin.delete_user(found["id"])


@pytest.fixture
def web(console: Context, trust: ssl.SSLContext, user: tuple[str, str]) -> Iterator[httpx.Client]:
    with browser_login(console, trust, *user) as client:
        yield client


def png() -> bytes:
    """A 1x1 PNG, written out by hand (no imaging library in this venv's tests)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00")) + chunk(b"IEND", b""))


def stored(web: httpx.Client, run: str, count: int, timeout: float = 60) -> list[dict[str, Any]]:
    """The run's events once the notification service holds ``count`` of them."""
    deadline = time.monotonic() + timeout
    path = f"/events/api/v1/runs/{quote(run, safe='/')}/events"
    while True:
        resp = web.get(path, headers=API)
        found = resp.json().get("events", []) if resp.status_code == 200 else []
        if len(found) >= count:
            return list(found)
        assert time.monotonic() < deadline, f"{count} events of {run} not stored: {resp.status_code} " \
                                            f"{resp.text[:300]}"
        time.sleep(0.5)


def test_the_console_pages_render_for_a_signed_in_user(web: httpx.Client, user: tuple[str, str],
                                                       console: Context, trust: ssl.SSLContext) -> None:
    name, password = user
    token = keycloak.user_token(console.settings, name, password)
    project = f"console-{uuid.uuid4().hex[:6]}"
    made = httpx.post(f"{console.settings.public_url}/catalog/api/v1/projects",
                      json={"name": project, "description": "the console's test"},
                      headers={"Authorization": f"Bearer {token}"},
                      verify=trust, timeout=30)
    assert made.status_code == 201, made.text

    landing = web.get("/", headers=BROWSER)
    assert landing.status_code == 200
    assert re.search(rf'id="username">{name}<', landing.text)
    assert f'href="/projects/{project}"' in landing.text
    assert "data-unavailable" not in landing.text, landing.text
    assert "script-src 'self'" in landing.headers["content-security-policy"]

    projects = web.get("/projects", headers=BROWSER)
    assert projects.status_code == 200 and project in projects.text
    one = web.get(f"/projects/{project}", headers=BROWSER)
    assert one.status_code == 200 and "the console&#x27;s test" in one.text

    models = web.get("/models", headers=BROWSER)
    assert models.status_code == 200 and ('id="models"' in models.text or "no registered" in models.text)
    if 'href="/models/bracelet"' in models.text:
        page = web.get("/models/bracelet", headers=BROWSER)
        assert page.status_code == 200
        for chart in ("chart-psi", "chart-drifted", "chart-quality"):
            assert f'id="{chart}"' in page.text

    script = web.get("/static/console.js")
    assert script.status_code == 200 and "EventSource" in script.text


def test_a_run_shows_its_events_and_streams_new_ones(web: httpx.Client, user: tuple[str, str]) -> None:
    name, _ = user
    # With the characters of Airflow's run ids (":" and "+"), escaped in every URL.
    run = f"notebook/{name}/manual__2026-11-23T10:00:00+00:00-{uuid.uuid4().hex[:8]}"
    ctx = {"run": run, "user": name, "workflow": "", "step": "train"}
    events.status("running", "started by the console test", **ctx)
    events.log("<b>epoch 1</b> done", **ctx)
    picture = events.image(png(), title="curve", **ctx)
    stored(web, run, 3)

    runs = web.get("/runs", headers=BROWSER)
    link = f"/runs/{quote(run, safe='/')}"
    assert runs.status_code == 200 and f'href="{link}"' in runs.text
    page = web.get(link, headers=BROWSER)
    assert page.status_code == 200
    assert "&lt;b&gt;epoch 1&lt;/b&gt; done" in page.text
    content = f"/events/api/v1/events/{picture['id']}/content"
    assert f'<img src="{content}"' in page.text
    after = re.search(r'data-stream="([^"]+)" data-after="(\d+)"', page.text)
    assert after, page.text[:2000]
    # The image as the browser loads it: with the session cookie only.
    img = web.get(content, headers={"Accept": "image/*"})
    assert img.status_code == 200 and img.headers["content-type"] == "image/png"
    assert img.content == png()

    # The stream as EventSource opens it, after the last event the page showed.
    stream_url, last = after.group(1), after.group(2)
    with web.stream("GET", f"{stream_url}?after={last}",
                    headers={"Accept": "text/event-stream"}, timeout=30) as live:
        assert live.status_code == 200
        events.log("epoch 2 done", **ctx)
        got = None
        for line in live.iter_lines():
            if line.startswith("data:"):
                got = json.loads(line[5:])
                break
    assert got is not None and got["data"]["text"] == "epoch 2 done"
    assert int(got["seq"]) > int(last)


def test_without_a_session_the_events_api_asks_for_a_token(console: Context, trust: ssl.SSLContext) -> None:
    with httpx.Client(base_url=console.settings.public_url, verify=trust, timeout=30) as anonymous:
        resp = anonymous.get("/events/api/v1/runs", headers={"Accept": "text/event-stream"})
    assert resp.status_code == 401
