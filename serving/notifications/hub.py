"""Live fan-out: stored events pushed to every open stream of this process.

One PostgreSQL connection per process LISTENs on store.CHANNEL; each notification
(sent at the commit of a batch, by whichever process consumed it) makes the hub read
the events after the newest one it has seen and hand them to every subscriber's
queue. Reading by seq rather than trusting payloads means a missed notification
(a reconnect) only delays events: the next one, or the periodic check, catches up.

A subscriber that falls too far behind (its queue full) is closed rather than
blocking the others; its client reconnects with Last-Event-ID and reads the gap
from the table.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import psycopg
from prometheus_client import Gauge
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from serving.notifications import store

log = logging.getLogger(__name__)

# Also read without a notification this often (seconds): a safety net, not the path.
CHECK_EVERY = 5.0
QUEUE_SIZE = 1000
CLOSED = None  # put in a subscriber's queue: the stream must end

STREAMS = Gauge("skiff_notifications_streams", "Open event streams (SSE connections)")

Item = tuple[dict[str, Any], str, str] | None


def listen_url(database_url: str) -> str:
    """libpq's form of SQLAlchemy's ``postgresql+psycopg://`` URL."""
    return database_url.replace("postgresql+psycopg://", "postgresql://", 1)


class Hub:
    def __init__(self, database_url: str, db: Engine) -> None:
        self.url = listen_url(database_url)
        self.db = db
        self.last_seq = 0
        self.subscribers: set[asyncio.Queue[Item]] = set()
        self.listening = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def subscribe(self) -> asyncio.Queue[Item]:
        queue: asyncio.Queue[Item] = asyncio.Queue(QUEUE_SIZE)
        self.subscribers.add(queue)
        STREAMS.set(len(self.subscribers))
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Item]) -> None:
        self.subscribers.discard(queue)
        STREAMS.set(len(self.subscribers))

    async def start(self) -> None:
        self.last_seq = await run_in_threadpool(store.newest_seq, self.db)
        self._task = asyncio.create_task(self.run(), name="events-hub")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for queue in list(self.subscribers):
            self._close(queue)

    def _close(self, queue: asyncio.Queue[Item]) -> None:
        self.unsubscribe(queue)
        while not queue.empty():
            queue.get_nowait()
        queue.put_nowait(CLOSED)

    async def deliver(self) -> None:
        """Hand every event stored since the last call to the subscribers."""
        while True:
            rows = await run_in_threadpool(store.since, self.db, self.last_seq)
            if not rows:
                return
            for row in rows:
                for queue in list(self.subscribers):
                    try:
                        queue.put_nowait(row)
                    except asyncio.QueueFull:
                        log.warning("a stream fell %d events behind: closed", QUEUE_SIZE)
                        self._close(queue)
            self.last_seq = rows[-1][0]["seq"]

    async def run(self) -> None:
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {store.CHANNEL}")
                    self.listening.set()
                    await self.deliver()  # what was stored while not listening
                    while True:
                        async for _ in conn.notifies(timeout=CHECK_EVERY, stop_after=1):
                            pass
                        await self.deliver()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database restarting: listen again
                self.listening.clear()
                log.warning("listening for events failed (%s); reconnecting", exc)
                await asyncio.sleep(2.0)
