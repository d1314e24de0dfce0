"""What a native service is: how it is installed, prepared, run and checked.

One module per service in ``skiff.services`` builds a :class:`Service`; the
launcher only ever talks to this shape, so adding a service is one new module
plus a line in ``skiff.services.REGISTRY``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from skiff.native.context import Context


class NotReady(Exception):
    """A readiness probe's answer: the service is not ready yet, and why."""


@dataclass(frozen=True)
class Program:
    """One long-running process under supervisord.

    ``name`` is the supervisor program name; for a single-process service it is
    the service name, so ``skiff logs NAME`` finds it.
    """

    name: str
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    directory: Path | None = None
    user: str | None = None
    # Seconds supervisord waits after SIGTERM before SIGKILL of the whole group.
    stop_wait: int = 20
    # Whether this program alone does its job (raises NotReady if not), for a program
    # that runs in a container of its own (`skiff-run`, `skiff probe`); None: the service's ``ready``
    # for its first program, the process being alive for the others.
    health: Callable[[Context], None] | None = None


@dataclass(frozen=True)
class Service:
    """A native service: one row of the services table.

    Every callable takes the :class:`Context`. ``install`` must be idempotent and
    may take minutes; ``prepare`` runs before each start (write config, init a
    data directory once); ``ready`` raises :class:`NotReady` until the service
    answers; ``bootstrap`` runs once it is ready (create buckets, topics...), and
    must be idempotent too.
    """

    name: str
    description: str
    programs: Callable[[Context], list[Program]]
    ready: Callable[[Context], None]
    url: Callable[[Context], str]
    ports: Callable[[Context], list[int]]
    depends_on: tuple[str, ...] = ()
    install: Callable[[Context], None] | None = None
    prepare: Callable[[Context], None] | None = None
    bootstrap: Callable[[Context], None] | None = None
    # Debian packages it needs to be installed and run (skiff.native.system); a
    # ``{name}`` is a version from versions.env, e.g. ``postgresql-{postgres_version}``.
    packages: tuple[str, ...] = ()
    # Cold starts of the JVM services take a while on two cores.
    start_timeout: float = 180.0
