"""Patient profiles from Apache Ignite, for requests that name a patient instead of sending everything.

pyignite's ``Client`` is not thread-safe, so each worker thread keeps its own
connection, opened on its first profile lookup and reused after that: a lookup
is one round trip, never a connect. A connection that fails is dropped and the
next lookup on that thread opens a new one, so the server recovers by itself
when Ignite comes back.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterable
from typing import Any, Protocol

from skiff.bracelet import profiles

log = logging.getLogger(__name__)


class ProfileStoreUnavailable(RuntimeError):
    """Ignite could not be asked; the message says why (for a 503)."""


class ProfileSource(Protocol):
    def get_many(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]: ...


class IgniteProfiles:
    """Profiles by patient id from the Ignite cache :data:`profiles.CACHE`."""

    def __init__(self, host: str, port: int, password: str | None, timeout: float = 2.0) -> None:
        self.host = host
        self.port = port
        self._password = password
        self.timeout = timeout
        self._local = threading.local()
        self._all: list[Any] = []
        self._lock = threading.Lock()

    def _new_client(self) -> Any:
        # Imported here: the app's unit tests that never look up a profile need no pyignite.
        from pyignite import Client

        # One node behind the address: partition awareness would only add a reconnect thread.
        client = Client(username="ignite" if self._password else None, password=self._password,
                        use_ssl=False, partition_aware=False, timeout=self.timeout,
                        handshake_timeout=self.timeout)
        client.connect(self.host, self.port)
        return client

    def _cache(self) -> Any:
        cache = getattr(self._local, "cache", None)
        if cache is None:
            client = self._new_client()
            # get_cache, not get_or_create: a missing cache means no profiles were loaded yet.
            cache = client.get_cache(profiles.CACHE)
            self._local.client, self._local.cache = client, cache
            with self._lock:
                self._all.append(client)
        return cache

    def _drop(self) -> None:
        client = getattr(self._local, "client", None)
        self._local.client = self._local.cache = None
        if client is not None:
            with self._lock:
                if client in self._all:
                    self._all.remove(client)
            # Closing a broken socket may fail too; it is gone either way.
            with contextlib.suppress(Exception):
                client.close()

    def get_many(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The stored profiles of ``ids`` that exist; raises ProfileStoreUnavailable."""
        keys = list(dict.fromkeys(ids))
        # A kept connection may have died while idle (Ignite restarted): one more try on a
        # fresh one before answering 503. A fresh connection that fails is the answer.
        tries = 2 if getattr(self._local, "cache", None) is not None else 1
        for attempt in range(1, tries + 1):
            try:
                cache = self._cache()
                found = cache.get_all(keys) if len(keys) > 1 else _one(cache, keys[0])
                break
            except Exception as exc:
                self._drop()
                if attempt < tries:
                    continue
                why = _reason(exc)
                log.warning("profile lookup at %s:%s failed: %s", self.host, self.port, why)
                raise ProfileStoreUnavailable(f"Ignite at {self.host}:{self.port}: {why}") from exc
        out: dict[str, dict[str, Any]] = {}
        for key, text in found.items():
            try:
                out[key] = profiles.decode(text)
            except (TypeError, ValueError) as exc:
                raise ProfileStoreUnavailable(f"the stored profile of {key!r} is unreadable: {exc}") from exc
        return out

    def close(self) -> None:
        with self._lock:
            clients, self._all = self._all, []
        for client in clients:
            with contextlib.suppress(Exception):
                client.close()


def _one(cache: Any, key: str) -> dict[str, Any]:
    value = cache.get(key)
    return {} if value is None else {key: value}


def _reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    if "Cache does not exist" in text:
        return f"no cache {profiles.CACHE!r}: profiles were never loaded (run the load_profiles DAG)"
    return f"{type(exc).__name__}: {text}"
