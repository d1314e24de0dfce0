"""Platform events: progress, results and alerts of runs, for people to follow live.

    from skiff import events
    events.log("epoch 3 done")
    events.metrics({"loss": 0.12}, step=3)
    events.image(fig, title="clusters after 30 iterations")

Each call sends one JSON event to Kafka (topic ``events_topic``, key = the run) and
returns it; the notification service stores it and pushes it to the console. Images,
files and any payload larger than ``events_inline_bytes`` go to S3 (bucket
``events_bucket``) and the event carries a ``link`` instead of ``data``.

Delivery: each call waits for Kafka's acknowledgement (there is nothing to flush),
so an event that returned was stored by Kafka and reaches the notification service
even when that service is down at the time. When Kafka or S3 cannot take the event,
the call raises :class:`EventsError`: nothing is dropped silently, and the caller
decides whether a failed progress report should stop its work. One producer per
process, closed at exit.

The run, step, user and workflow come from the environment (see
:mod:`skiff.events.context`) unless given as keyword arguments.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import math
import mimetypes
import os
import re
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from skiff.events.context import RunContext, new_run, resolve, set_context
from skiff.events.transport import EventsError, shared

__all__ = ["KINDS", "EventsError", "RunContext", "alert", "current", "emit", "file", "html",
           "image", "log", "metrics", "new_run", "parameters", "set_context", "status"]

KINDS = ("log", "image", "parameters", "file", "html", "status", "alert", "metrics")
# Kinds whose payload is bytes in S3, never inline.
LINKED_KINDS = ("image", "file")
IMAGE_TYPES = ("image/png", "image/jpeg", "image/svg+xml")
SEVERITIES = ("warning", "critical")


def current(**given: str | None) -> RunContext:
    """The run, step, user and workflow the next event would carry."""
    return resolve(os.environ, **given)


def _jsonable(value: Any) -> Any:
    """json.dumps' fallback: numpy scalars/arrays, dates, paths; str for the rest."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return str(value)


def _clean(value: Any) -> Any:
    """The payload as plain JSON: NaN and infinities (not JSON) become null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _to_json(data: Any) -> Any:
    return _clean(json.loads(json.dumps(data, default=_jsonable, allow_nan=True)))


def _safe_name(name: str) -> str:
    """A file name fit for an S3 key and a Content-Disposition header."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", os.path.basename(name)).strip("._")
    return cleaned or "content"


def emit(kind: str, *, title: str = "", data: Mapping[str, Any] | None = None,
         content: bytes | None = None, content_type: str | None = None, name: str | None = None,
         run: str | None = None, step: str | None = None, user: str | None = None,
         workflow: str | None = None) -> dict[str, Any]:
    """Send one event and return it (as sent). Raises EventsError if Kafka or S3 refuse it."""
    if kind not in KINDS:
        raise ValueError(f"unknown event kind {kind!r}; known: {', '.join(KINDS)}")
    if kind in LINKED_KINDS and content is None:
        raise ValueError(f"a {kind} event needs content (bytes), stored in S3")
    if content is not None and not isinstance(content, bytes | bytearray | memoryview):
        raise TypeError(f"content must be bytes, not {type(content).__name__}")
    ctx = resolve(os.environ, run=run, step=step, user=user, workflow=workflow)
    event_id = uuid.uuid4().hex
    event: dict[str, Any] = {
        "id": event_id,
        "time": dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"),
        "kind": kind, "run": ctx.run, "step": ctx.step, "user": ctx.user,
        "workflow": ctx.workflow, "title": str(title), "link": None,
    }
    sender = shared()
    payload = _to_json(dict(data or {}))
    if content is None:
        inline = json.dumps(payload, separators=(",", ":")).encode()
        if len(inline) > sender.cfg.inline_bytes:
            # Too big for a Kafka record people scroll through: to S3, as text for a
            # log (readable in a browser tab), as JSON otherwise.
            if kind == "log" and isinstance(payload.get("text"), str):
                content, content_type = payload["text"].encode(), "text/plain; charset=utf-8"
                name = name or "log.txt"
            else:
                content, content_type = inline, "application/json"
                name = name or f"{kind}.json"
    if content is None:
        event["data"] = payload
    else:
        body = bytes(content)
        ctype = content_type or mimetypes.guess_type(name or "")[0] or "application/octet-stream"
        fname = _safe_name(name or f"{kind}{mimetypes.guess_extension(ctype) or '.bin'}")
        key = f"{ctx.run}/{event_id}/{fname}"
        event["link"] = {"url": sender.upload(key, body, ctype), "content_type": ctype,
                         "size": len(body), "name": fname}
    sender.send(event)
    return event


def log(text: str, **ctx: Any) -> dict[str, Any]:
    """A line (or block) of text; shown preformatted."""
    return emit("log", title=ctx.pop("title", ""), data={"text": str(text)}, **ctx)


def parameters(values: Mapping[str, Any], **ctx: Any) -> dict[str, Any]:
    """The run's parameters (or any name -> value table)."""
    return emit("parameters", title=ctx.pop("title", ""), data={"values": dict(values)}, **ctx)


def metrics(values: Mapping[str, Any], step: int | None = None, **ctx: Any) -> dict[str, Any]:
    """Numbers at a point of the run (``step``: iteration/epoch). Non-finite ones become null.

    The metrics' ``step`` is the iteration; the run's step (task) is ``task_step=...``.
    """
    numbers: dict[str, float | None] = {}
    for key, value in values.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"metric {key!r} is not a number: {value!r}") from None
        numbers[str(key)] = number if math.isfinite(number) else None
    data: dict[str, Any] = {"values": numbers}
    if step is not None:
        data["step"] = int(step)
    run_step = ctx.pop("task_step", None)
    return emit("metrics", title=ctx.pop("title", ""), data=data, step=run_step, **ctx)


def status(state: str, message: str = "", **ctx: Any) -> dict[str, Any]:
    """The run's state (running, success, failed...): the run list shows the last one."""
    return emit("status", title=ctx.pop("title", "") or state,
                data={"state": str(state), "message": str(message)}, **ctx)


def alert(message: str, severity: str = "warning", details: Mapping[str, Any] | None = None,
          **ctx: Any) -> dict[str, Any]:
    """Something people must look at (drift, a failed check)."""
    if severity not in SEVERITIES:
        raise ValueError(f"unknown severity {severity!r}; known: {', '.join(SEVERITIES)}")
    return emit("alert", title=ctx.pop("title", "") or message,
                data={"severity": severity, "message": str(message),
                      "details": dict(details or {})}, **ctx)


def html(markup: str, **ctx: Any) -> dict[str, Any]:
    """An HTML fragment (the console shows it in a sandboxed frame: no scripts run)."""
    return emit("html", title=ctx.pop("title", ""), data={"html": str(markup)}, **ctx)


def _image_type(content: bytes) -> str:
    if content.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if content.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    head = content[:512].lstrip().lower()
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in head):
        return "image/svg+xml"
    raise ValueError("image bytes are not PNG, JPEG or SVG")


def image(picture: Any, title: str = "", **ctx: Any) -> dict[str, Any]:
    """An image: PNG/JPEG/SVG bytes, or a matplotlib figure (saved as PNG)."""
    if hasattr(picture, "savefig"):
        buffer = io.BytesIO()
        picture.savefig(buffer, format="png", bbox_inches="tight")
        content = buffer.getvalue()
    elif isinstance(picture, bytes | bytearray | memoryview):
        content = bytes(picture)
    else:
        raise TypeError("image() takes PNG/JPEG/SVG bytes or a matplotlib figure, "
                        f"not {type(picture).__name__}")
    ctype = _image_type(content)
    name = ctx.pop("name", None) or "image" + {"image/png": ".png", "image/jpeg": ".jpg",
                                               "image/svg+xml": ".svg"}[ctype]
    return emit("image", title=title, content=content, content_type=ctype, name=name, **ctx)


def file(source: str | os.PathLike[str] | bytes, name: str | None = None,
         **ctx: Any) -> dict[str, Any]:
    """A file to download: a path, or bytes with a ``name``."""
    if isinstance(source, bytes | bytearray | memoryview):
        content = bytes(source)
        name = name or "file"
    else:
        path = Path(source)
        content = path.read_bytes()
        name = name or path.name
    ctype = ctx.pop("content_type", None) or mimetypes.guess_type(name)[0] \
        or "application/octet-stream"
    return emit("file", title=ctx.pop("title", "") or name, content=content,
                content_type=ctype, name=name, **ctx)
