"""The platform's services, in start order. Adding a service: one module, one line here."""

from __future__ import annotations

from skiff.native.spec import Service
from skiff.services import (
    airflow,
    cassandra,
    catalog,
    ignite,
    ingest,
    jupyterhub,
    kafka,
    keycloak,
    mlflow,
    model_server,
    notifications,
    portal,
    postgres,
    prometheus,
    redis,
    s3,
    spark,
    traefik,
    training_trigger,
)

REGISTRY: dict[str, Service] = {
    svc.name: svc
    for svc in (
        postgres.SERVICE,
        keycloak.SERVICE,
        s3.SERVICE,
        kafka.SERVICE,
        cassandra.SERVICE,
        ignite.SERVICE,
        spark.SERVICE,
        mlflow.SERVICE,
        model_server.SERVICE,
        ingest.SERVICE,
        redis.SERVICE,
        airflow.SERVICE,
        training_trigger.SERVICE,
        jupyterhub.SERVICE,
        catalog.SERVICE,
        notifications.SERVICE,
        portal.SERVICE,
        prometheus.SERVICE,
        traefik.SERVICE,
    )
}


def in_start_order(names: list[str] | None = None,
                   registry: dict[str, Service] | None = None) -> list[Service]:
    """The named services (all by default) and what they depend on, dependencies first."""
    registry = REGISTRY if registry is None else registry
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
