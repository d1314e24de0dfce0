"""An asset version's history: the version, then every input version transitively, each once."""

from __future__ import annotations

from collections import deque
from typing import Any

from serving.catalog import access
from serving.catalog.assets import iso
from serving.catalog.auth import Caller
from serving.catalog.db import Asset, Version
from serving.catalog.errors import ApiError
from serving.catalog.lineage import find_version, run_fields


def version_json(v: Version) -> dict[str, Any]:
    return {"version": v.version, "location": v.location, "format": v.format,
            "size_bytes": v.size_bytes, "digest": v.digest, "run": v.run_id,
            "created_at": iso(v.created_at), "created_by": v.created_by}


def entry(v: Version, caller: Caller) -> dict[str, Any]:
    return {"ref": v.ref, "location": v.location, "format": v.format,
            "size_bytes": v.size_bytes, "digest": v.digest, "created_at": iso(v.created_at),
            "created_by": v.created_by, "run": run_fields(v.run) if v.run else None,
            "inputs": [i.ref for i in v.inputs if access.can_read(caller, i.asset)]}


def chain(asset: Asset, version: str | None, caller: Caller) -> dict[str, Any]:
    if not asset.versions:
        raise ApiError(404, "no_versions", f"{asset.ref} has no recorded versions yet",
                       asset=asset.ref)
    start = asset.versions[-1] if version is None else find_version(asset, version)
    if start is None:
        raise ApiError(404, "not_found", f"no version {asset.ref}@{version}; known: "
                       f"{', '.join(v.version for v in asset.versions)}",
                       asset=f"{asset.ref}@{version}")
    seen = {start.id}
    queue = deque([start])
    entries: list[dict[str, Any]] = []
    hidden = 0
    while queue:
        v = queue.popleft()
        entries.append(entry(v, caller))
        for i in v.inputs:
            if i.id in seen:
                continue
            seen.add(i.id)
            # Inputs the caller may not read are neither shown nor followed.
            if access.can_read(caller, i.asset):
                queue.append(i)
            else:
                hidden += 1
    return {"asset": asset.ref, "version": start.version, "chain": entries,
            "hidden_inputs": hidden}
