"""The notification service's HTTP API: runs, their events, live streams, linked content.

``uvicorn --factory serving.notifications.app:create_app``: one process holding the
Kafka consumer (a thread), the LISTEN hub and every open stream on its event loop
(ADR 0017). Every endpoint but /healthz and /metrics takes a Keycloak bearer token;
Traefik publishes only /api/ and /healthz (at /events).

    GET /api/v1/runs                      ?limit=&before=<last_seq>   newest first
    GET /api/v1/runs/<run>/events         ?kind=a,b&after=<seq>&limit=
    GET /api/v1/runs/<run>/stream         text/event-stream, after Last-Event-ID / ?after=
    GET /api/v1/stream                    every visible event, live (Last-Event-ID resumes)
    GET /api/v1/events/<id>/content       the event's S3 object (image inline, file download)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import quote

from minio import Minio
from minio.error import S3Error
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import Engine, text
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from serving.notifications import migrate, store
from serving.notifications.access import Access, ApiError, Caller, not_found
from serving.notifications.config import Config
from serving.notifications.consumer import Consumer
from serving.notifications.hub import Hub

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 15.0
MAX_LIMIT = 1000
IMAGE_TYPES = ("image/png", "image/jpeg", "image/svg+xml")
# Linked content is served from the API's own origin: never let it run anything.
CONTENT_HEADERS = {"X-Content-Type-Options": "nosniff",
                   "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                                              "sandbox"}


def invalid(field: str, message: str) -> ApiError:
    return ApiError(422, "invalid", f"{field}: {message}")


def int_param(request: Request, name: str, default: int | None, low: int,
              high: int | None = None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise invalid(name, f"{raw!r} is not an integer") from None
    if value < low or (high is not None and value > high):
        raise invalid(name, f"{value} is outside {low}..{high if high is not None else ''}")
    return value


def kinds_param(request: Request) -> list[str]:
    raw = request.query_params.get("kind") or ""
    kinds = [k.strip() for k in raw.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in store.KINDS]
    if unknown:
        raise invalid("kind", f"unknown kind(s) {', '.join(unknown)}; known: "
                      f"{', '.join(store.KINDS)}")
    return kinds


def resume_point(request: Request) -> int:
    """Where a stream starts: Last-Event-ID (the browser's reconnect) or ?after=, else now."""
    header = request.headers.get("last-event-id")
    if header:
        try:
            return max(0, int(header))
        except ValueError:
            raise invalid("Last-Event-ID", f"{header!r} is not an event seq") from None
    after = int_param(request, "after", None, 0)
    return -1 if after is None else after


def sse(event: dict[str, Any]) -> str:
    # id = seq: the browser sends it back as Last-Event-ID when it reconnects.
    return f"id: {event['seq']}\ndata: {json.dumps(event, separators=(',', ':'))}\n\n"


class Service:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.db: Engine = store.engine(config.database_url)
        self.access = Access(config)
        self.hub = Hub(config.database_url, self.db)
        self.consumer = Consumer(config, self.db)
        s3 = config.s3
        self.s3 = Minio(f"{s3.get('S3_HOST') or '127.0.0.1'}:{s3.get('S3_PORT') or '7070'}",
                        access_key=s3["S3_ACCESS_KEY"], secret_key=s3["S3_SECRET_KEY"],
                        region=s3.get("S3_REGION") or None, secure=False)

    # -- helpers -----------------------------------------------------------------------

    def caller(self, request: Request) -> Caller:
        return self.access.caller(request.headers.get("authorization"))

    def visible_run(self, caller: Caller, name: str) -> store.Run:
        run = store.run(self.db, name)
        if run is None or not self.access.visible(caller, run.owner, run.workflow):
            raise not_found("run", name)
        return run

    async def visible(self, caller: Caller, owner: str, workflow: str) -> bool:
        if caller.admin or caller.user == owner:
            return True
        if not workflow:
            return False
        try:
            return await run_in_threadpool(self.access.reads_workflow, caller, workflow)
        except ApiError:
            return False  # the catalog is down: show nothing rather than everything

    # -- endpoints ---------------------------------------------------------------------

    def healthz(self, request: Request) -> JSONResponse:
        try:
            with self.db.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:  # any database failure makes the service unhealthy
            return JSONResponse({"status": "unavailable", "database": str(exc)}, 503)
        return JSONResponse({"status": "ok", "consumer": self.consumer.ready.is_set(),
                             "listening": self.hub.listening.is_set()})

    def metrics(self, request: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    def runs(self, request: Request) -> JSONResponse:
        caller = self.caller(request)
        limit = int_param(request, "limit", 50, 1, MAX_LIMIT) or 50
        before = int_param(request, "before", None, 1)
        found: list[store.Run] = []
        scanned = 0
        exhausted = False
        # Runs of workflows are checked one by one with the catalog (cached): scan
        # pages until the answer is full, and at most 10 pages' worth of rows; the
        # cursor is then the last run looked at, so the next page goes on from there.
        while len(found) < limit and scanned < 10 * limit:
            page = store.runs(self.db, owner=None if caller.admin else caller.user,
                              include_workflows=True, before=before, limit=limit)
            exhausted = len(page) < limit
            for r in page:
                scanned += 1
                before = r.last_seq
                if self.access.visible(caller, r.owner, r.workflow):
                    found.append(r)
                    if len(found) == limit:
                        break
            if exhausted:
                break
        more = not exhausted or len(found) == limit
        return JSONResponse({"runs": [r.as_json() for r in found],
                             "next_before": before if more and before is not None else None})

    def run_events(self, request: Request) -> JSONResponse:
        caller = self.caller(request)
        run = self.visible_run(caller, request.path_params["run"])
        kinds = kinds_param(request)
        after = int_param(request, "after", 0, 0) or 0
        limit = int_param(request, "limit", 100, 1, MAX_LIMIT) or 100
        events = store.events(self.db, run.run, kinds=kinds, after=after, limit=limit)
        return JSONResponse({"run": run.as_json(), "events": events,
                             "next_after": events[-1]["seq"] if len(events) == limit else None})

    async def run_stream(self, request: Request) -> StreamingResponse:
        caller = await run_in_threadpool(self.caller, request)
        name = request.path_params["run"]
        known = await run_in_threadpool(store.run, self.db, name)
        if known is not None and not await self.visible(caller, known.owner, known.workflow):
            raise not_found("run", name)
        kinds = kinds_param(request)
        after = resume_point(request)
        # A run with no event yet (a page opened as the run is triggered) is waited for:
        # whether it is the caller's to see is decided by its first event, and the stream
        # ends there when it is not (the browser's reconnect then gets the 404).
        return self.stream(caller, after=max(after, 0), run=name, kinds=kinds,
                           pending=known is None)

    async def all_stream(self, request: Request) -> StreamingResponse:
        caller = await run_in_threadpool(self.caller, request)
        kinds = kinds_param(request)
        after = resume_point(request)
        # Without a resume point the landing page wants what happens from now on.
        return self.stream(caller, after=after if after >= 0 else self.hub.last_seq, run=None,
                           kinds=kinds)

    def stream(self, caller: Caller, *, after: int, run: str | None,
               kinds: list[str], pending: bool = False) -> StreamingResponse:
        verdict: list[bool] = [] if pending else [True]

        async def run_allowed() -> bool:
            """Whether a pending run, now that it has events, is the caller's to see."""
            if not verdict:
                assert run is not None
                found = await run_in_threadpool(store.run, self.db, run)
                verdict.append(found is not None
                               and await self.visible(caller, found.owner, found.workflow))
            return verdict[0]

        async def backlog(last: int) -> AsyncIterator[dict[str, Any]]:
            while True:
                if run is not None:
                    rows = [(e, "", "") for e in await run_in_threadpool(
                        store.events, self.db, run, kinds=kinds, after=last, limit=500)]
                else:
                    rows = await run_in_threadpool(store.since, self.db, last, 500)
                for event, owner, workflow in rows:
                    last = event["seq"]
                    if run is None and not (await self.visible(caller, owner, workflow) and
                                            (not kinds or event["kind"] in kinds)):
                        continue
                    yield event
                if len(rows) < 500:
                    return

        async def body() -> AsyncIterator[str]:
            last = after
            # Subscribed before the backlog is read: nothing stored in between is missed
            # (the seq check below drops what the backlog already sent).
            queue = self.hub.subscribe()
            try:
                yield "retry: 3000\n\n"
                async for event in backlog(last):
                    if run is not None and not await run_allowed():
                        return
                    last = event["seq"]
                    yield sse(event)
                while caller.expires == 0 or time.time() < caller.expires:
                    try:
                        item = await asyncio.wait_for(queue.get(), HEARTBEAT_SECONDS)
                    except TimeoutError:
                        yield ": keepalive\n\n"
                        continue
                    if item is None:
                        return
                    event, owner, workflow = item
                    if event["seq"] <= last or (kinds and event["kind"] not in kinds):
                        continue
                    if run is not None and (event["run"] != run or not await run_allowed()):
                        if event["run"] == run:
                            return
                        continue
                    if run is None and not await self.visible(caller, owner, workflow):
                        continue
                    last = event["seq"]
                    yield sse(event)
            finally:
                self.hub.unsubscribe(queue)

        return StreamingResponse(body(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache",
                                          # Traefik/nginx must not buffer a stream.
                                          "X-Accel-Buffering": "no"})

    def content(self, request: Request) -> Response:
        caller = self.caller(request)
        event_id = request.path_params["id"]
        found = store.event(self.db, event_id)
        if found is None or not self.access.visible(caller, found[1].owner, found[1].workflow):
            raise not_found("event", event_id)
        event = found[0]
        link = event.get("link") or {}
        match = re.fullmatch(r"s3://([^/]+)/(.+)", str(link.get("url") or ""))
        if not match:
            raise ApiError(404, "no_content", f"event {event_id!r} links no content")
        bucket, key = match.groups()
        if bucket != self.config.bucket:
            # The service reads S3 as root: only its own bucket, whatever a record says.
            raise ApiError(404, "no_content", f"event {event_id!r} links outside bucket "
                           f"{self.config.bucket!r}")
        if not key.startswith(f"{event.get('run')}/{event_id}/"):
            # skiff.events stores an event's file under its run and id. A link elsewhere
            # would show this run's readers a file of a run they may not see.
            raise ApiError(404, "no_content", f"event {event_id!r} links a file that is not "
                           "its own (another run's or another event's)")
        try:
            obj = self.s3.get_object(bucket, key)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchBucket"):
                raise ApiError(404, "content_gone", f"the content of event {event_id!r} "
                               f"(s3://{bucket}/{key}) no longer exists") from exc
            raise ApiError(502, "s3_error", f"S3 refused s3://{bucket}/{key}: {exc.code}") from exc
        ctype = str(link.get("content_type") or "application/octet-stream")
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", str(link.get("name") or "content")) or "content"
        inline = event["kind"] == "image" and ctype in IMAGE_TYPES
        if event["kind"] == "image" and not inline:
            ctype = "application/octet-stream"
        disposition = "inline" if inline else "attachment"
        headers = {**CONTENT_HEADERS,
                   "Content-Disposition": f"{disposition}; filename=\"{name}\"; "
                                          f"filename*=UTF-8''{quote(name)}",
                   "Cache-Control": "private, max-age=3600"}
        if obj.headers.get("Content-Length"):
            headers["Content-Length"] = obj.headers["Content-Length"]

        def chunks() -> Iterator[bytes]:
            try:
                yield from obj.stream(64 * 1024)
            finally:
                obj.close()
                obj.release_conn()

        return StreamingResponse(chunks(), media_type=ctype, headers=headers)


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return JSONResponse(exc.body(), exc.status)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "error")
    message = (f"no endpoint {request.method} {request.url.path}" if exc.status_code in (404, 405)
               else str(exc.detail))
    return JSONResponse({"error": code, "message": message}, exc.status_code)


def create_app(config: Config | None = None, *, consume: bool = True) -> Starlette:
    config = config or Config.from_env()
    service = Service(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await run_in_threadpool(migrate.upgrade, config.database_url)
        await service.hub.start()
        if consume:
            service.consumer.start()
        try:
            yield
        finally:
            await service.hub.stop()
            await run_in_threadpool(service.consumer.stop)
            service.db.dispose()

    routes = [
        Route("/healthz", service.healthz),
        Route("/metrics", service.metrics),
        Route("/api/v1/runs", service.runs),
        Route("/api/v1/runs/{run:path}/events", service.run_events),
        Route("/api/v1/runs/{run:path}/stream", service.run_stream),
        Route("/api/v1/stream", service.all_stream),
        Route("/api/v1/events/{id}/content", service.content),
    ]
    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={ApiError: api_error, HTTPException: http_error})
    app.state.service = service
    return app
