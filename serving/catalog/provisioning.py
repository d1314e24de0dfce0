"""The caller's data sources, made on first sight: stores.provision(user, teams).

``serving.catalog.stores`` (the S3 stores of users and teams) is imported
lazily: the catalog runs without it, and says so in ``/api/v1/me``. A user is
provisioned again when their teams change (a new team's bucket to reach).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from serving.catalog.db import Principal, utcnow

log = logging.getLogger(__name__)


def provisioner() -> Callable[[str, list[str]], list[str]] | None:
    try:
        stores = importlib.import_module("serving.catalog.stores")
    except ModuleNotFoundError as exc:
        if exc.name != "serving.catalog.stores":
            raise
        return None
    return getattr(stores, "provision", None)


def provision(user: str, teams: list[str]) -> dict[str, Any]:
    run = provisioner()
    if run is None:
        return {"provisioned": False, "reason": "data-source provisioning is not installed"}
    return {"provisioned": True, "data_sources": list(run(user, list(teams)))}


def s3_keys(session: Session, user: str) -> dict[str, str] | None:
    """``user``'s own S3 keys and where they work, from their private store; None without one."""
    from serving.catalog import assets

    stores = importlib.import_module("serving.catalog.stores")
    asset = assets.find_asset(session, stores.KIND, stores.user_bucket(user))
    if asset is None or asset.secret is None or not (asset.spec or {}).get("managed"):
        return None
    from serving.catalog.state import current

    secret = current().secrets.open(asset.secret)
    s3 = asset.spec.get("s3", {})
    return {"access_key": secret["access_key"], "secret_key": secret["secret_key"],
            "endpoint": s3.get("endpoint", ""), "region": s3.get("region", ""),
            "bucket": s3.get("bucket", "")}


def on_first_sight(session: Session, user: str, teams: list[str]) -> dict[str, Any] | None:
    """Provision once per user and set of teams; None when nothing had to be done."""
    seen = session.get(Principal, user)
    if seen is not None and seen.teams == sorted(teams) and seen.provisioned_at is not None:
        return None
    try:
        result = provision(user, teams)
    except Exception as exc:  # the caller still gets their answer; we log why
        log.exception("provisioning data sources of %s failed", user)
        return {"provisioned": False, "reason": f"{type(exc).__name__}: {exc}"}
    # An upsert: two first calls of one user at once (two browser tabs) both get here.
    values = {"name": user, "teams": sorted(teams),
              "provisioned_at": utcnow() if result["provisioned"] else None}
    session.execute(insert(Principal).values(**values).on_conflict_do_update(
        index_elements=[Principal.name], set_={k: v for k, v in values.items() if k != "name"}))
    return result
