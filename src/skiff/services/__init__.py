"""The platform's services, in start order. Adding a service: one module, one line here.

Modules are imported when first needed: a container's ``skiff-run kafka`` loads the
Kafka module alone, not every service's client libraries (the ``skiff`` CLI loads all).
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import Any

from skiff.native.spec import Service

# Service name -> its module in this package, in start order.
MODULES: dict[str, str] = {
    "postgres": "postgres",
    "keycloak": "keycloak",
    "s3": "s3",
    "kafka": "kafka",
    "cassandra": "cassandra",
    "ignite": "ignite",
    "spark": "spark",
    "mlflow": "mlflow",
    "model-server": "model_server",
    "ingest": "ingest",
    "redis": "redis",
    "airflow": "airflow",
    "training-trigger": "training_trigger",
    "jupyterhub": "jupyterhub",
    "catalog": "catalog",
    "notifications": "notifications",
    "portal": "portal",
    "prometheus": "prometheus",
    "traefik": "traefik",
}


def load(name: str) -> Service:
    """The service called ``name``, or owning the program ``name`` (``airflow-scheduler``:
    a program's name starts with its service's)."""
    owners = [svc for svc in MODULES if name == svc or name.startswith(svc + "-")]
    if not owners:
        raise KeyError(f"unknown service or program {name!r} (services: {', '.join(MODULES)})")
    svc = max(owners, key=len)
    module = importlib.import_module(f"{__name__}.{MODULES[svc]}")
    return module.SERVICE  # type: ignore[no-any-return]


@cache
def _registry() -> dict[str, Service]:
    return {name: load(name) for name in MODULES}


def __getattr__(attr: str) -> Any:
    # REGISTRY is built on first use; `from skiff.services import kafka` still works as
    # any submodule import does.
    if attr == "REGISTRY":
        return _registry()
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


def in_start_order(names: list[str] | None = None,
                   registry: dict[str, Service] | None = None) -> list[Service]:
    """The named services (all by default) and what they depend on, dependencies first."""
    registry = _registry() if registry is None else registry
    wanted = names or list(registry)
    ordered: list[Service] = []

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name not in registry:
            known = ", ".join(registry)
            raise KeyError(f"unknown service {name!r} (known: {known})")
        if name in chain:
            raise ValueError(f"dependency cycle: {' -> '.join((*chain, name))}")
        svc = registry[name]
        for dep in svc.depends_on:
            visit(dep, (*chain, name))
        if svc not in ordered:
            ordered.append(svc)

    for name in wanted:
        visit(name, ())
    return ordered
