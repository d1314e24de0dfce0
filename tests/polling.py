"""Waiting for a condition on the real stack (a service stores, scrapes or consumes
asynchronously): poll, never sleep a guessed time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(probe: Callable[[], T | None], what: str, timeout: float = 60.0,
               interval: float = 0.2) -> T:
    """probe()'s first truthy answer, polled every ``interval`` until ``timeout``."""
    end = time.monotonic() + timeout
    while True:
        answer = probe()
        if answer:
            return answer
        if time.monotonic() > end:
            raise AssertionError(f"not within {timeout:.0f}s: {what}")
        time.sleep(interval)
