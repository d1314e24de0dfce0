"""The notification service's parts that need no stack: event checks, request parameters, errors."""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from serving.notifications import app as app_mod
from serving.notifications import store
from serving.notifications.access import ApiError
from serving.notifications.config import Config
from serving.notifications.hub import listen_url

EVENT = {"id": "abc", "time": "2026-11-23T10:00:00+00:00", "kind": "log", "run": "d/r",
         "user": "alice", "data": {"text": "hi"}}


def test_a_valid_event_is_normalised() -> None:
    event = store.parse(json.dumps(EVENT).encode())
    assert event["step"] == "" and event["workflow"] == "" and event["title"] == ""


@pytest.mark.parametrize(("change", "message"), [
    ({"id": ""}, "field 'id'"),
    ({"kind": "progress"}, "unknown kind"),
    ({"time": "yesterday"}, "not ISO-8601"),
    ({"time": "2026-11-23T10:00:00"}, "no time zone"),
    ({"link": "s3://x"}, "link is not an object"),
])
def test_records_that_are_not_events_are_refused(change: dict[str, Any], message: str) -> None:
    with pytest.raises(store.BadEvent, match=message):
        store.parse(json.dumps({**EVENT, **change}))
    with pytest.raises(store.BadEvent, match="not JSON"):
        store.parse(b"\xff")


def test_config_fails_closed_naming_what_is_missing() -> None:
    with pytest.raises(RuntimeError, match=r"NOTIFICATIONS_DATABASE_URL.*CATALOG_URL"):
        Config.from_env({"AUTH_ISSUER": "x"})


def test_the_listener_uses_libpqs_url() -> None:
    assert listen_url("postgresql+psycopg://u:p@h:5432/n") == "postgresql://u:p@h:5432/n"


def params_app() -> Starlette:
    def endpoint(request: Request) -> JSONResponse:
        return JSONResponse({"limit": app_mod.int_param(request, "limit", 100, 1, 1000),
                             "kinds": app_mod.kinds_param(request),
                             "resume": app_mod.resume_point(request)})

    return Starlette(routes=[Route("/p", endpoint)],
                     exception_handlers={ApiError: app_mod.api_error})


@pytest.mark.parametrize(("query", "headers", "expected"), [
    ("", {}, {"limit": 100, "kinds": [], "resume": -1}),
    ("?limit=5&kind=log,image", {}, {"limit": 5, "kinds": ["log", "image"], "resume": -1}),
    ("?after=7", {}, {"limit": 100, "kinds": [], "resume": 7}),
    ("?after=7", {"Last-Event-ID": "9"}, {"limit": 100, "kinds": [], "resume": 9}),
])
def test_request_parameters(query: str, headers: dict[str, str], expected: dict[str, Any]) -> None:
    answer = TestClient(params_app()).get(f"/p{query}", headers=headers)
    assert answer.status_code == 200 and answer.json() == expected


@pytest.mark.parametrize(("query", "headers", "message"), [
    ("?limit=0", {}, "limit: 0 is outside 1..1000"),
    ("?limit=ten", {}, "limit: 'ten' is not an integer"),
    ("?kind=log,nope", {}, "kind: unknown kind(s) nope"),
    ("", {"Last-Event-ID": "x"}, "Last-Event-ID: 'x' is not an event seq"),
])
def test_bad_parameters_are_named(query: str, headers: dict[str, str], message: str) -> None:
    answer = TestClient(params_app()).get(f"/p{query}", headers=headers)
    assert answer.status_code == 422
    assert answer.json()["error"] == "invalid" and answer.json()["message"].startswith(message)


def test_sse_frames_carry_the_seq_as_id() -> None:
    frame = app_mod.sse({"seq": 12, "kind": "log"})
    assert frame.startswith("id: 12\ndata: {") and frame.endswith("\n\n")
