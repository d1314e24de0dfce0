"""The catalog's REST API, ``/api/v1``: thin views over assets, workflows, lineage, history."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, jsonify, request
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from serving.catalog import access, assets, history, lineage, provisioning, specs, workflows
from serving.catalog.auth import Caller
from serving.catalog.db import Project, Run, Version
from serving.catalog.errors import ApiError, forbidden, not_found
from serving.catalog.state import current

api = Blueprint("api", __name__, url_prefix="/api/v1")


def caller() -> Caller:
    return g.caller


def body() -> Any:
    data = request.get_json(silent=True)
    if data is None:
        raw = request.get_data(as_text=True)
        why = "the body is empty" if not raw.strip() else "the body is not valid JSON"
        raise ApiError(400, "malformed_json", f"{why}; send a JSON object with "
                       "Content-Type: application/json")
    return data


def created(payload: dict[str, Any]) -> tuple[Response, int]:
    return jsonify(payload), 201


def need_service(what: str) -> None:
    if not caller().admin:
        raise forbidden(f"{what} is for the platform's service account and admins only")


# --- who am I --------------------------------------------------------------------------------

@api.get("/me")
def me() -> Response:
    me_ = caller()
    answer = me_.as_json()
    if not me_.service:
        with current().db.session() as session:
            result = provisioning.on_first_sight(session, me_.user, list(me_.teams))
        if result is not None:
            answer["provisioning"] = result
    return jsonify(answer)


@api.post("/users/<name>/provision")
def provision_user(name: str) -> Response:
    need_service("provisioning users' data sources")
    data = body()
    teams = data.get("teams", []) if isinstance(data, dict) else None
    if not isinstance(teams, list) or not all(isinstance(t, str) for t in teams):
        raise ApiError(422, "invalid", "teams: expected a list of team names", field="teams")
    result = provisioning.provision(name, teams)
    return jsonify({"user": name, "teams": teams, **result})


@api.get("/users/<name>/s3")
def s3_keys(name: str) -> Response:
    """A person's own S3 keys, for user code: to that person (their notebook server asks
    when it starts), or to the platform's service (the pipeline runner, for the nodes of
    that person's pipelines). Nobody else, admins included: keys are not for browsing."""
    me_ = caller()
    if me_.user != name and not me_.service:
        raise forbidden(f"{name}'s S3 keys are theirs: you may ask for your own only")
    if me_.user == name:
        # Their teams may have changed, and the platform's buckets gain folders for them.
        result = provisioning.provision(name, list(me_.teams))
        if not result["provisioned"]:
            raise ApiError(503, "no_stores", f"no S3 account can be made: {result['reason']}")
    with current().db.session() as session:
        keys = provisioning.s3_keys(session, name)
    if keys is None:
        raise ApiError(404, "no_s3_account", f"{name} has no S3 account yet: it is made when "
                       "they first sign in to their notebooks or the catalog", user=name)
    return jsonify({"user": name, **keys})


# --- projects --------------------------------------------------------------------------------

@api.post("/projects")
def create_project() -> tuple[Response, int]:
    parsed = specs.parse(specs.ProjectCreate, body())
    team, level = access.initial_team_access(caller(), parsed.team, parsed.access)
    with current().db.session() as session:
        if session.scalars(select(Project).where(Project.name == parsed.name)).first():
            raise ApiError(409, "exists", f"project {parsed.name} already exists",
                           project=parsed.name)
        project = Project(name=parsed.name, description=parsed.description, owner=caller().user,
                          team=team, access=level)
        session.add(project)
        session.flush()
        return created(assets.project_json(project, caller(), with_assets=True))


@api.get("/projects")
def list_projects() -> Response:
    with current().db.session() as session:
        found = session.scalars(select(Project).where(access.visible(caller(), Project))
                                .order_by(Project.name))
        return jsonify({"projects": [assets.project_json(p, caller()) for p in found]})


@api.get("/projects/<name>")
def get_project(name: str) -> Response:
    with current().db.session() as session:
        project = assets.readable_project(session, caller(), name)
        return jsonify(assets.project_json(project, caller(), with_assets=True))


@api.patch("/projects/<name>")
def patch_project(name: str) -> Response:
    parsed = specs.parse(specs.ProjectPatch, body())
    changes = parsed.model_dump(exclude_unset=True)
    with current().db.session() as session:
        project = assets.editable_project(session, caller(), name)
        if "access" in changes and changes["access"] is None:
            raise ApiError(422, "invalid", "access: may not be null", field="access")
        team = changes.get("team", project.team)
        level = changes.get("access", project.access)
        if "team" in changes:
            access.check_team(caller(), team, level)
        elif level in ("team", "public") and not team:
            access.check_team(caller(), None, level)
        project.team, project.access = team, level
        if "description" in changes:
            project.description = changes["description"] or ""
        session.flush()
        return jsonify(assets.project_json(project, caller(), with_assets=True))


@api.delete("/projects/<name>")
def delete_project(name: str) -> tuple[str, int]:
    with current().db.session() as session:
        session.delete(assets.editable_project(session, caller(), name))
    return "", 204


@api.put("/projects/<name>/assets/<kind>/<aname>")
def add_to_project(name: str, kind: str, aname: str) -> Response:
    with current().db.session() as session:
        project = assets.editable_project(session, caller(), name)
        asset = assets.readable_asset(session, caller(), kind, aname)
        if asset not in project.assets:
            project.assets.append(asset)
        session.flush()
        return jsonify(assets.project_json(project, caller(), with_assets=True))


@api.delete("/projects/<name>/assets/<kind>/<aname>")
def remove_from_project(name: str, kind: str, aname: str) -> Response:
    with current().db.session() as session:
        project = assets.editable_project(session, caller(), name)
        asset = assets.readable_asset(session, caller(), kind, aname)
        if asset not in project.assets:
            raise ApiError(404, "not_in_project", f"{asset.ref} is not in project {name}",
                           asset=asset.ref, project=name)
        project.assets.remove(asset)
        session.flush()
        return jsonify(assets.project_json(project, caller(), with_assets=True))


# --- assets ----------------------------------------------------------------------------------

@api.post("/assets")
def create_asset() -> tuple[Response, int]:
    parsed = specs.parse(specs.AssetCreate, body())
    with current().db.session() as session:
        asset = assets.create_asset(session, caller(), parsed, current().secrets)
        return created(assets.asset_json(asset, caller()))


@api.get("/assets")
def list_assets() -> Response:
    args = request.args
    with current().db.session() as session:
        found = assets.list_assets(session, caller(), args.get("kind"), args.get("project"),
                                   args.get("owner"), args.get("q"))
        return jsonify({"assets": [assets.asset_json(a, caller()) for a in found]})


@api.get("/assets/<kind>/<name>")
def get_asset(kind: str, name: str) -> Response:
    with current().db.session() as session:
        return jsonify(assets.asset_json(assets.readable_asset(session, caller(), kind, name),
                                         caller()))


@api.patch("/assets/<kind>/<name>")
def patch_asset(kind: str, name: str) -> Response:
    parsed = specs.parse(specs.AssetPatch, body())
    with current().db.session() as session:
        asset = assets.editable_asset(session, caller(), kind, name)
        assets.patch_asset(session, caller(), asset, parsed, current().secrets)
        return jsonify(assets.asset_json(asset, caller()))


@api.delete("/assets/<kind>/<name>")
def delete_asset(kind: str, name: str) -> tuple[str, int]:
    with current().db.session() as session:
        asset = assets.editable_asset(session, caller(), kind, name)
        if asset.spec.get("managed") and not caller().admin:
            raise forbidden(f"{asset.ref} is a store the platform manages; it stays")
        assets.delete_asset(session, asset)
    return "", 204


@api.get("/assets/data_source/<name>/credentials")
def credentials(name: str) -> Response:
    with current().db.session() as session:
        asset = assets.readable_asset(session, caller(), "data_source", name)
        if not asset.spec.get("managed") or asset.owner != caller().user:
            raise forbidden(f"credentials are handed out for your own managed store only; "
                            f"{asset.ref} is not one")
        if asset.secret is None:
            raise ApiError(404, "no_secret", f"{asset.ref} has no stored secret", asset=asset.ref)
        spec = assets.public_spec(asset)
        spec["secret"] = current().secrets.open(asset.secret)
        return jsonify({"ref": asset.ref, "spec": spec})


@api.get("/assets/<kind>/<name>/versions")
def versions(kind: str, name: str) -> Response:
    with current().db.session() as session:
        asset = assets.readable_asset(session, caller(), kind, name)
        return jsonify({"asset": asset.ref,
                        "versions": [history.version_json(v) for v in asset.versions]})


@api.get("/assets/<kind>/<name>/history")
def asset_history(kind: str, name: str) -> Response:
    with current().db.session() as session:
        asset = assets.readable_asset(session, caller(), kind, name)
        return jsonify(history.chain(asset, request.args.get("version"), caller()))


# --- workflows -------------------------------------------------------------------------------

@api.post("/workflows/check")
def check_workflow() -> Response:
    parsed = specs.parse(specs.WorkflowCheck, body())
    team, level = access.initial_team_access(caller(), parsed.team, parsed.access)
    name = f"workflow/{parsed.name}" if parsed.name else "workflow"
    with current().db.session() as session:
        workflows.check_uses(session, caller(), name, level, team, parsed.uses)
    return jsonify({"ok": True})


@api.get("/workflows/by-dag/<dag_id>")
def workflow_by_dag(dag_id: str) -> Response:
    with current().db.session() as session:
        found = workflows.by_dag(session, dag_id)
        if found is None or not access.can_read(caller(), found):
            raise not_found(dag_id, "dag")
        return jsonify(assets.asset_json(found, caller()))


@api.post("/workflows/by-dag/<dag_id>/runnable")
def workflow_runnable(dag_id: str) -> Response:
    with current().db.session() as session:
        found = workflows.by_dag(session, dag_id)
        if found is None or not access.can_read(caller(), found):
            raise not_found(dag_id, "dag")
        workflows.runnable(session, caller(), found)
        return jsonify({"ok": True, "workflow": assets.asset_json(found, caller())})


# --- lineage and runs ------------------------------------------------------------------------

@api.post("/lineage")
def post_lineage() -> tuple[Response, int]:
    need_service("posting lineage")
    data = body()
    try:
        with current().db.session() as session:
            return created(lineage.ingest(session, caller(), data))
    except IntegrityError:
        # Two events made the same new asset or run at once; the second sees it now.
        with current().db.session() as session:
            return created(lineage.ingest(session, caller(), data))


@api.get("/runs/<run_id>")
def get_run(run_id: str) -> Response:
    with current().db.session() as session:
        run = session.get(Run, run_id)
        if run is None:
            raise not_found(run_id, "run")
        outputs = session.scalars(select(Version).where(Version.run_id == run.run_id))
        # A run is seen by its user and by whoever may read something it made.
        if not (caller().admin or run.user == caller().user
                or any(access.can_read(caller(), v.asset) for v in outputs)):
            raise not_found(run_id, "run")
        return jsonify(lineage.run_json(session, run))
