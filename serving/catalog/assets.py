"""Assets and projects: create, read, change, delete, under the access rules (access.py)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from serving.catalog import access, specs
from serving.catalog.auth import Caller
from serving.catalog.crypto import Secrets
from serving.catalog.db import Asset, Project, Version
from serving.catalog.errors import ApiError, forbidden, not_found


def iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def latest_version(asset: Asset) -> Version | None:
    return asset.versions[-1] if asset.versions else None


def public_spec(asset: Asset) -> dict[str, Any]:
    spec = dict(asset.spec or {})
    if asset.kind == "data_source" and asset.secret is not None:
        model = specs.SECRET_MODELS.get(spec.get("type", ""))
        spec["secret"] = {"stored": True, "fields": sorted(model.model_fields) if model else []}
    return spec


def asset_json(asset: Asset, caller: Caller | None = None) -> dict[str, Any]:
    latest = latest_version(asset)
    return {
        "id": asset.id, "kind": asset.kind, "name": asset.name, "ref": asset.ref,
        "owner": asset.owner, "team": asset.team, "access": asset.access,
        "description": asset.description, "location": asset.location, "format": asset.format,
        "size_bytes": asset.size_bytes, "digest": asset.digest, "spec": public_spec(asset),
        "projects": [p.name for p in asset.projects if caller is None
                     or access.can_read(caller, p)],
        "created_at": iso(asset.created_at), "updated_at": iso(asset.updated_at),
        "latest_version": latest.version if latest else None,
    }


def project_json(project: Project, caller: Caller, with_assets: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": project.id, "name": project.name, "description": project.description,
        "owner": project.owner, "team": project.team, "access": project.access,
        "created_at": iso(project.created_at), "updated_at": iso(project.updated_at),
    }
    if with_assets:
        body["assets"] = [asset_json(a, caller) for a in project.assets
                          if access.can_read(caller, a)]
    return body


def find_asset(session: Session, kind: str, name: str, *, lock: bool = False) -> Asset | None:
    query = select(Asset).where(Asset.kind == kind, Asset.name == name)
    # Locked: versions are numbered from the asset's existing ones, one writer at a time.
    return session.scalars(query.with_for_update() if lock else query).first()


def readable_asset(session: Session, caller: Caller, kind: str, name: str) -> Asset:
    if kind not in specs.KINDS:
        raise ApiError(404, "unknown_kind", f"no kind {kind!r}: kinds are "
                       f"{', '.join(specs.KINDS)}", kind=kind)
    asset = find_asset(session, kind, name)
    if asset is None or not access.can_read(caller, asset):
        raise not_found(f"{kind}/{name}")
    return asset


def editable_asset(session: Session, caller: Caller, kind: str, name: str) -> Asset:
    asset = readable_asset(session, caller, kind, name)
    if not access.can_edit(caller, asset):
        raise forbidden(f"you may read {asset.ref} but not change it: it is {asset.access}"
                        f"{' to team ' + asset.team if asset.team else ''}, owned by {asset.owner}")
    return asset


def readable_project(session: Session, caller: Caller, name: str) -> Project:
    project = session.scalars(select(Project).where(Project.name == name)).first()
    if project is None or not access.can_read(caller, project):
        raise not_found(name, "project")
    return project


def editable_project(session: Session, caller: Caller, name: str) -> Project:
    project = readable_project(session, caller, name)
    if not access.can_edit(caller, project):
        raise forbidden(f"you may read project {name} but not change it")
    return project


# --- kind-specific specs ---------------------------------------------------------------------

def clean_spec(kind: str, spec: dict[str, Any], secrets: Secrets, existing: Asset | None = None,
               *, managed: bool = False) -> tuple[dict[str, Any], str | None]:
    """The spec to store and the sealed secret (data sources); 422 naming a bad field."""
    model = specs.SPEC_MODELS.get(kind)
    if model is None:
        return spec, None
    parsed = specs.parse(model, spec, "spec")
    if kind != "data_source":
        return parsed.model_dump(mode="json", exclude_none=True), None
    assert isinstance(parsed, specs.DataSourceSpec)
    if parsed.managed is not None and not managed:
        raise ApiError(422, "invalid", "spec.managed: set by the server only (the platform's "
                       "own stores); leave it out", field="spec.managed")
    stored = parsed.model_dump(mode="json", exclude_none=True, exclude={"secret"})
    if managed or (existing is not None and existing.spec.get("managed")):
        stored["managed"] = True
    secret = parsed.secret
    sealed = existing.secret if existing is not None else None
    keeps_stored = isinstance(secret, dict) and secret.get("stored") is True
    if secret is not None and not keeps_stored:
        checked = specs.parse(specs.SECRET_MODELS[parsed.type], secret, "spec.secret")
        clear = checked.model_dump()
        sealed = secrets.seal(clear)
    elif sealed is not None and existing is not None:
        if existing.spec.get("type") != parsed.type:
            # Keys of an S3 store are no password of a database: a new type needs its secret.
            raise ApiError(422, "invalid", f"spec.secret: the type changed to {parsed.type}; "
                           "send its secret", field="spec.secret")
    return stored, sealed


# --- assets ----------------------------------------------------------------------------------

def stores_reserved(kind: str, name: str) -> bool:
    from serving.catalog import stores

    return stores.is_reserved(kind, name)


def create_asset(session: Session, caller: Caller, body: specs.AssetCreate, secrets: Secrets,
                 *, managed: bool = False) -> Asset:
    if body.owner is not None and not caller.admin:
        raise ApiError(422, "invalid", "owner: only admins register assets for someone else",
                       field="owner")
    if not managed and stores_reserved(body.kind, body.name):
        # Taken first by someone else, the name would keep the real store out of the catalog.
        raise ApiError(422, "reserved_name", f"name: data sources named public, user-* or team-* "
                       f"are the platform's own stores; choose another name than {body.name!r}",
                       field="name")
    team, level = access.initial_team_access(caller, body.team, body.access)
    spec, sealed = clean_spec(body.kind, body.spec, secrets, managed=managed)
    if find_asset(session, body.kind, body.name) is not None:
        # Said even when the caller cannot see it: names are platform-wide, and a create
        # must not silently land elsewhere. It reveals the name only, nothing about it.
        raise ApiError(409, "exists", f"{body.kind}/{body.name} already exists",
                       asset=f"{body.kind}/{body.name}")
    asset = Asset(kind=body.kind, name=body.name, owner=body.owner or caller.user, team=team,
                  access=level, description=body.description, location=body.location,
                  format=body.format, size_bytes=body.size_bytes, digest=body.digest,
                  spec=spec, secret=sealed)
    if body.kind == "workflow":
        from serving.catalog import workflows
        workflows.check_new(session, caller, asset)
    asset.projects = [editable_project_for_asset(session, caller, p) for p in body.projects]
    session.add(asset)
    session.flush()
    return asset


def editable_project_for_asset(session: Session, caller: Caller, name: str) -> Project:
    project = session.scalars(select(Project).where(Project.name == name)).first()
    if project is None or not access.can_read(caller, project):
        raise ApiError(422, "unknown_project", f"projects: no project {name!r} (or it is not "
                       "visible to you)", field="projects", project=name)
    if not access.can_edit(caller, project):
        raise forbidden(f"you may not add assets to project {name}")
    return project


def patch_asset(session: Session, caller: Caller, asset: Asset, body: specs.AssetPatch,
                secrets: Secrets) -> Asset:
    changes = body.model_dump(exclude_unset=True)
    if asset.spec.get("managed") and not caller.admin and set(changes) - {"description"}:
        raise forbidden(f"{asset.ref} is a store the platform manages; only its description "
                        "may change")
    if "access" in changes and changes["access"] is None:
        raise ApiError(422, "invalid", "access: may not be null", field="access")
    team = changes.get("team", asset.team)
    level = changes.get("access", asset.access)
    if "team" in changes:
        access.check_team(caller, team, level)
    elif level in ("team", "public") and not team:
        access.check_team(caller, None, level)
    asset.team, asset.access = team, level
    for key in ("description", "location", "format", "size_bytes", "digest"):
        if key in changes:
            setattr(asset, key, changes[key] if key != "description" else changes[key] or "")
    dag_before = (asset.spec or {}).get("dag_id")
    if "spec" in changes:
        spec, sealed = clean_spec(asset.kind, changes["spec"] or {}, secrets, asset)
        asset.spec, asset.secret = spec, sealed
    if asset.kind == "workflow":
        from serving.catalog import workflows
        # Whose DAG is asked when it changes: a teammate may edit a team workflow.
        workflows.check_new(session, caller, asset, dag_changed=asset.spec.get("dag_id") != dag_before)
    session.flush()
    return asset


def delete_asset(session: Session, asset: Asset) -> None:
    session.delete(asset)
    session.flush()


def list_assets(session: Session, caller: Caller, kind: str | None, project: str | None,
                owner: str | None, q: str | None) -> list[Asset]:
    query = select(Asset).where(access.visible(caller, Asset))
    if kind:
        if kind not in specs.KINDS:
            raise ApiError(422, "invalid", f"kind: {kind!r} is not one of {', '.join(specs.KINDS)}",
                           field="kind")
        query = query.where(Asset.kind == kind)
    if project:
        found = readable_project(session, caller, project)
        query = query.where(Asset.projects.any(Project.id == found.id))
    if owner:
        query = query.where(Asset.owner == owner)
    if q:
        escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        like = f"%{escaped}%"
        query = query.where(or_(Asset.name.ilike(like), Asset.description.ilike(like)))
    return list(session.scalars(query.order_by(Asset.kind, Asset.name)))


def count_assets(session: Session) -> int:
    return session.scalar(select(func.count(Asset.id))) or 0


def upsert_managed_source(session: Session, secrets: Secrets, *, name: str, owner: str,
                          team: str | None, access_level: str, spec: dict[str, Any],
                          secret: dict[str, Any] | None = None,
                          description: str = "") -> Asset:
    """Register (or bring up to date) a data source the platform manages; for stores.py.

    ``spec`` as in the API (type and its section, no ``managed``); ``secret`` in clear,
    sealed here. Idempotent: the same call twice leaves one asset.
    """
    body = {**spec, "secret": secret} if secret is not None else dict(spec)
    asset = find_asset(session, "data_source", name)
    clean, sealed = clean_spec("data_source", body, secrets, asset, managed=True)
    if asset is None:
        asset = Asset(kind="data_source", name=name, owner=owner, team=team, access=access_level,
                      description=description, spec=clean, secret=sealed)
        session.add(asset)
    else:
        asset.owner, asset.team, asset.access = owner, team, access_level
        asset.spec, asset.secret = clean, sealed
        if description:
            asset.description = description
    session.flush()
    return asset
