"""The visibility rule: a workflow may not reach wider than the data it uses.

- a ``team`` workflow may not use a ``private`` asset, nor a ``team`` asset of
  another team (its members would run it on data they may not read);
- a ``public`` workflow may use ``public`` assets only;
- every used asset must exist and be readable by the caller.

Checked when a workflow is registered or changed, by ``/workflows/check`` (the
Elyra runtime, before it submits) and again when a run starts (``runnable``),
with the access levels of that moment.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from serving.catalog import access, specs
from serving.catalog.assets import find_asset
from serving.catalog.auth import Caller
from serving.catalog.db import Asset
from serving.catalog.errors import ApiError
from skiff.pipelines.spec import SpecError, dag_namespace


def check_uses(session: Session, caller: Caller, workflow: str, level: str, team: str | None,
               uses: Iterable[str]) -> None:
    for ref in uses:
        kind, name, _ = specs.parse_ref(ref, "spec.uses")
        used = find_asset(session, kind, name)
        if used is None or not access.can_read(caller, used):
            raise ApiError(422, "unknown_asset", f"{workflow} uses {ref}, which does not exist "
                           "or is not visible to you", asset=ref)
        problem = refusal(workflow, level, team, used)
        if problem:
            raise ApiError(422, "visibility", problem, asset=used.ref, workflow=workflow)


def refusal(workflow: str, level: str, team: str | None, used: Asset) -> str | None:
    """Why a ``level`` workflow of ``team`` may not use ``used``; None if it may."""
    if level == "public" and used.access != "public":
        return f"public {workflow} may not use {used.access} {used.ref}"
    if level == "team":
        if used.access == "private":
            return f"team {workflow} may not use private {used.ref}"
        if used.access == "team" and used.team != team:
            return (f"team {workflow} (team {team}) may not use {used.ref}, which is visible "
                    f"to team {used.team} only")
    return None


def check_new(session: Session, caller: Caller, workflow: Asset, *, dag_changed: bool = True) -> None:
    """On POST/PATCH of a workflow: whose DAG it is (when it names a DAG anew), the rule,
    and one workflow per Airflow DAG."""
    spec = workflow.spec
    if dag_changed:
        check_dag_owner(session, caller, spec["dag_id"])
    check_uses(session, caller, workflow.ref, workflow.access, workflow.team, spec.get("uses", []))
    other = by_dag(session, spec["dag_id"])
    if other is not None and other is not workflow and other.id != workflow.id:
        raise ApiError(409, "dag_registered", f"DAG {spec['dag_id']} is already registered as "
                       f"{other.ref}", asset=other.ref, field="spec.dag_id")


def dag_prefix(user: str) -> str:
    """The DAG ids a person may register begin so: what the Elyra runtime names their pipelines."""
    try:
        return dag_namespace(user)
    except SpecError:  # a name without a letter or digit: no namespace at all
        return ""


def check_dag_owner(session: Session, caller: Caller, dag_id: str) -> None:
    """A person registers DAGs in their own namespace only; every other DAG id is the platform's.

    The workflow decides who sees a DAG's runs and whether it may run at all: registering
    someone else's DAG (or a DAG the platform will ship) would take it over. Names that
    differ only in characters an identifier drops (``jane.doe``, ``jane-doe``) make
    the same prefix: the namespace is then whoever registered in it first.
    """
    if caller.admin:
        return
    prefix = dag_prefix(caller.user)
    if not prefix or not dag_id.startswith(prefix):
        raise ApiError(403, "dag_not_yours",
                       f"DAG {dag_id} is not yours to register: yours begin with "
                       f"{prefix or '(none: your user name has no letter or digit)'} (the Elyra "
                       "runtime names your pipelines so); other DAG ids belong to their owners or "
                       "to the platform", field="spec.dag_id")
    # Another person whose own prefix this is (an admin registering for someone holds none).
    owners = session.scalars(select(Asset.owner).distinct().where(
        Asset.kind == "workflow", Asset.owner != caller.user,
        Asset.spec["dag_id"].astext.startswith(prefix, autoescape=True))).all()
    holder = next((owner for owner in owners if dag_prefix(owner) == prefix), None)
    if holder is not None:
        raise ApiError(403, "dag_not_yours",
                       f"DAG ids beginning with {prefix} are {holder}'s, who registered there "
                       "first (user names that differ only in '.', '-' or '@' share one prefix)",
                       field="spec.dag_id")


def by_dag(session: Session, dag_id: str) -> Asset | None:
    return session.scalars(select(Asset).where(
        Asset.kind == "workflow", Asset.spec["dag_id"].astext == dag_id)).first()


def runnable(session: Session, caller: Caller, workflow: Asset) -> dict[str, Any]:
    check_uses(session, caller, workflow.ref, workflow.access, workflow.team,
               workflow.spec.get("uses", []))
    return {"ok": True}
