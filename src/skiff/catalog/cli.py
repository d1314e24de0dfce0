"""``skiff catalog ...`` and ``skiff history``: the catalog from the command line.

Who you are: ``SKIFF_TOKEN`` (a Keycloak access token) if set, else ``--user``
(or ``SKIFF_USERNAME``) with the password from ``SKIFF_PASSWORD`` or a prompt,
else the platform's admin from .env. Secrets of data sources are read from the
environment or a hidden prompt, never from the command line, and never printed.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from skiff.catalog.client import ACCESS_LEVELS, KINDS, CatalogError, Client, parse_ref

out = Console()
err = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


def _fail(message: str) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    sys.exit(1)


def _settings() -> Any:
    from skiff.native.context import Context

    return Context.discover().settings


def _credentials(user: str | None) -> tuple[str, str] | None:
    """(user, password) unless a token is given; the platform admin when no user is named."""
    if os.environ.get("SKIFF_TOKEN") and not user:
        return None
    user = user or os.environ.get("SKIFF_USERNAME")
    if user:
        password = os.environ.get("SKIFF_PASSWORD") or click.prompt(f"password of {user}", hide_input=True)
        return user, password
    s = _settings()
    return s.platform_admin_user, s.platform_admin_password.get_secret_value()


def _client(obj: dict[str, Any]) -> Client:
    creds = obj.get("credentials")
    try:
        if creds is None:
            return Client(obj.get("url"), token=os.environ["SKIFF_TOKEN"])
        return Client(obj.get("url"), username=creds[0], password=creds[1], settings=obj.get("settings"))
    except CatalogError as exc:
        _fail(str(exc))
        raise


def _call(obj: dict[str, Any], action: Callable[[Client], Any]) -> Any:
    try:
        with _client(obj) as client:
            return action(client)
    except CatalogError as exc:
        _fail(str(exc))
    except ValueError as exc:
        _fail(str(exc))


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True, default=str))


def _user_option(f: F) -> F:
    return click.option("--user", "-u", "user", default=None,
                        help="Act as this user (password from SKIFF_PASSWORD or a prompt); "
                             "default: SKIFF_TOKEN, SKIFF_USERNAME, or the platform admin.")(f)


def _prepare(obj: dict[str, Any], user: str | None, url: str | None = None) -> dict[str, Any]:
    """Who and where, worked out once per command line."""
    if "credentials" not in obj:
        obj["credentials"] = _credentials(user)
        obj["url"] = url or os.environ.get("CATALOG_URL") or None
        if obj["url"] is None or obj["credentials"] is not None:
            try:
                obj["settings"] = _settings()
            except (FileNotFoundError, ValueError):
                obj["settings"] = None
        if obj["url"] is None and obj.get("settings") is not None:
            s = obj["settings"]
            obj["url"] = f"http://{s.host('catalog')}:{s.catalog_port}"
    return obj


# --- skiff catalog ------------------------------------------------------------

@click.group()
@click.option("--url", default=None, help="The catalog's base URL (default: CATALOG_URL, or this stack's).")
@_user_option
@click.pass_context
def catalog(ctx: click.Context, url: str | None, user: str | None) -> None:
    """Projects, assets (datasets, models, data sources, workflows, services) and access levels.

    \b
    Access levels: private (the owner), team (the asset's team), public (everyone signed in).
    Examples:
      skiff catalog assets list --kind model
      skiff catalog assets register dataset/sales-2025 --access team --team analytics \\
          --location s3://team-analytics/sales.csv --format csv
      skiff catalog projects create "Sales-Forecast-2025" --team analytics --access team
      skiff history model/bracelet
    """
    ctx.ensure_object(dict)
    ctx.obj["url_option"], ctx.obj["user_option"] = url, user


def _obj(ctx: click.Context) -> dict[str, Any]:
    obj = ctx.ensure_object(dict)
    return _prepare(obj, obj.get("user_option"), obj.get("url_option"))


@catalog.command()
@click.pass_context
def me(ctx: click.Context) -> None:
    """Who the catalog sees: user, teams, roles."""
    _print_json(_call(_obj(ctx), lambda c: c.me()))


# --- projects ---

@catalog.group()
def projects() -> None:
    """Projects group assets; an asset may be in several."""


@projects.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def projects_list(ctx: click.Context, as_json: bool) -> None:
    """The projects you can see."""
    rows = _call(_obj(ctx), lambda c: c.projects())
    if as_json:
        _print_json(rows)
        return
    table = Table(title="projects")
    for col in ("name", "owner", "team", "access", "description"):
        table.add_column(col)
    for p in rows:
        table.add_row(p["name"], str(p.get("owner", "")), str(p.get("team") or ""), str(p.get("access", "")),
                      str(p.get("description") or "")[:60])
    out.print(table)


@projects.command("create")
@click.argument("name")
@click.option("--description", default="", help="What the project is for.")
@click.option("--team", default=None, help="The project's team (needed for team and public access).")
@click.option("--access", type=click.Choice(ACCESS_LEVELS), default=None, help="Default: private.")
@click.pass_context
def projects_create(ctx: click.Context, name: str, description: str, team: str | None,
                    access: str | None) -> None:
    """Create a project."""
    created = _call(_obj(ctx), lambda c: c.create_project(name, description, team, access))
    out.print(f"created project {created['name']} ({created.get('access')})")


@projects.command("show")
@click.argument("name")
@click.pass_context
def projects_show(ctx: click.Context, name: str) -> None:
    """A project and the assets in it you can see."""
    _print_json(_call(_obj(ctx), lambda c: c.project(name)))


@projects.command("add")
@click.argument("project")
@click.argument("refs", nargs=-1, required=True)
@click.pass_context
def projects_add(ctx: click.Context, project: str, refs: tuple[str, ...]) -> None:
    """Put assets (KIND/NAME) in a project."""
    for ref in refs:
        _call(_obj(ctx), functools.partial(_add, project=project, ref=ref))
        out.print(f"{ref} is in project {project}")


@projects.command("remove")
@click.argument("project")
@click.argument("refs", nargs=-1, required=True)
@click.pass_context
def projects_remove(ctx: click.Context, project: str, refs: tuple[str, ...]) -> None:
    """Take assets (KIND/NAME) out of a project (the assets stay)."""
    for ref in refs:
        _call(_obj(ctx), functools.partial(_remove, project=project, ref=ref))
        out.print(f"{ref} is no longer in project {project}")


def _add(client: Client, project: str, ref: str) -> Any:
    return client.add_to_project(project, ref)


def _remove(client: Client, project: str, ref: str) -> Any:
    return client.remove_from_project(project, ref)


# --- assets ---

@catalog.group()
def assets() -> None:
    """Datasets, models, data sources, workflows and services."""


@assets.command("list")
@click.option("--kind", type=click.Choice(KINDS), default=None)
@click.option("--project", default=None)
@click.option("--owner", default=None)
@click.option("--q", "query", default=None, help="Text in the name or description.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def assets_list(ctx: click.Context, kind: str | None, project: str | None, owner: str | None,
                query: str | None, as_json: bool) -> None:
    """The assets you can see."""
    rows = _call(_obj(ctx), lambda c: c.assets(kind=kind, project=project, owner=owner, q=query))
    if as_json:
        _print_json(rows)
        return
    table = Table(title="assets")
    for col in ("ref", "owner", "team", "access", "latest", "location"):
        table.add_column(col)
    for a in rows:
        latest = a.get("latest_version")
        if isinstance(latest, dict):
            latest = latest.get("version")
        table.add_row(a["ref"], str(a.get("owner", "")), str(a.get("team") or ""), str(a.get("access", "")),
                      str(latest or ""), str(a.get("location") or "")[:50])
    out.print(table)


@assets.command("show")
@click.argument("ref")
@click.pass_context
def assets_show(ctx: click.Context, ref: str) -> None:
    """One asset (KIND/NAME) as JSON; a data source's secret shows as stored, never in clear."""
    _print_json(_call(_obj(ctx), lambda c: c.asset(ref)))


def _spec(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--spec") from None
    if not isinstance(value, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--spec")
    return value


@assets.command("register")
@click.argument("ref")
@click.option("--description", default=None)
@click.option("--team", default=None, help="Needed for team and public access.")
@click.option("--access", type=click.Choice(ACCESS_LEVELS), default=None, help="Default: private.")
@click.option("--location", default=None, help="Where the data is, e.g. s3://bucket/key.")
@click.option("--format", "fmt", default=None, help="csv, parquet, onnx...")
@click.option("--spec", default=None, help="The kind's spec as a JSON object (workflows, services).")
@click.option("--project", "projects_", multiple=True, help="A project to put it in (repeatable).")
@click.pass_context
def assets_register(ctx: click.Context, ref: str, description: str | None, team: str | None,
                    access: str | None, location: str | None, fmt: str | None, spec: str | None,
                    projects_: tuple[str, ...]) -> None:
    """Register an asset KIND/NAME (for data sources with secrets: data-sources add)."""
    r = parse_ref(ref)
    fields = {"description": description, "team": team, "access": access, "location": location,
              "format": fmt, "spec": _spec(spec), "projects": list(projects_) or None}
    created = _call(_obj(ctx), lambda c: c.register(r.kind, r.name, **fields))
    out.print(f"registered {created['ref']} ({created.get('access')}, owner {created.get('owner')})")


@assets.command("set-access")
@click.argument("ref")
@click.argument("access", type=click.Choice(ACCESS_LEVELS))
@click.option("--team", default=None, help="The asset's team (needed for team and public access).")
@click.pass_context
def assets_set_access(ctx: click.Context, ref: str, access: str, team: str | None) -> None:
    """Change who sees an asset: private, team or public."""
    updated = _call(_obj(ctx), lambda c: c.set_access(ref, access, team))
    out.print(f"{updated['ref']} is now {updated['access']}"
              + (f" (team {updated['team']})" if updated.get("team") else ""))


@assets.command("delete")
@click.argument("ref")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def assets_delete(ctx: click.Context, ref: str, yes: bool) -> None:
    """Delete an asset from the catalog (not the data it points to)."""
    if not yes:
        click.confirm(f"Delete {ref} from the catalog?", abort=True)
    _call(_obj(ctx), lambda c: c.delete(ref))
    out.print(f"deleted {ref}")


# --- data sources ---

@catalog.group("data-sources")
def data_sources() -> None:
    """External data sources (S3, PostgreSQL, Cassandra); secrets stored encrypted."""


def _secret(env: str, prompt: str) -> str:
    value = os.environ.get(env)
    if value:
        return value
    return str(click.prompt(f"{prompt} (or set {env})", hide_input=True))


@data_sources.command("add")
@click.argument("name")
@click.option("--type", "kind", type=click.Choice(["s3", "postgresql", "cassandra"]), required=True)
@click.option("--endpoint", default=None, help="s3: the S3 endpoint URL.")
@click.option("--bucket", default=None, help="s3: the bucket.")
@click.option("--prefix", default=None, help="s3: a prefix inside the bucket.")
@click.option("--region", default=None, help="s3: the region.")
@click.option("--host", "hosts", multiple=True, help="postgresql: the host; cassandra: a contact point "
                                                      "(repeatable).")
@click.option("--port", type=int, default=None)
@click.option("--database", default=None, help="postgresql: the database.")
@click.option("--keyspace", default=None, help="cassandra: the keyspace.")
@click.option("--username", default=None, help="postgresql/cassandra: the database user.")
@click.option("--description", default=None)
@click.option("--team", default=None)
@click.option("--access", type=click.Choice(ACCESS_LEVELS), default=None, help="Default: private.")
@click.pass_context
def data_sources_add(ctx: click.Context, name: str, kind: str, endpoint: str | None, bucket: str | None,
                     prefix: str | None, region: str | None, hosts: tuple[str, ...], port: int | None,
                     database: str | None, keyspace: str | None, username: str | None,
                     description: str | None, team: str | None, access: str | None) -> None:
    """Register an external data source; its secret is read from the environment or a hidden prompt.

    \b
    s3:          SKIFF_S3_ACCESS_KEY, SKIFF_S3_SECRET_KEY
    postgresql:  SKIFF_DS_PASSWORD
    cassandra:   SKIFF_DS_PASSWORD (only with --username)
    """
    def need(value: Any, option: str) -> Any:
        if value in (None, "", ()):
            raise click.UsageError(f"--type {kind} needs {option}")
        return value

    secret: dict[str, str] | None
    if kind == "s3":
        settings = {"endpoint": need(endpoint, "--endpoint"), "bucket": need(bucket, "--bucket"),
                    "prefix": prefix, "region": region}
        secret = {"access_key": _secret("SKIFF_S3_ACCESS_KEY", "S3 access key"),
                  "secret_key": _secret("SKIFF_S3_SECRET_KEY", "S3 secret key")}
    elif kind == "postgresql":
        settings = {"host": need(hosts, "--host")[0], "port": port or 5432,
                    "database": need(database, "--database"), "username": need(username, "--username")}
        secret = {"password": _secret("SKIFF_DS_PASSWORD", f"password of {username}")}
    else:
        settings = {"hosts": list(need(hosts, "--host")), "port": port or 9042,
                    "keyspace": need(keyspace, "--keyspace"), "username": username}
        secret = {"password": _secret("SKIFF_DS_PASSWORD", f"password of {username}")} if username else None
    clean = {k: v for k, v in settings.items() if v is not None}
    created = _call(_obj(ctx), lambda c: c.add_data_source(
        name, kind, clean, secret, description=description, team=team, access=access))
    stored = "secret stored encrypted" if secret else "no secret"
    out.print(f"registered {created['ref']} ({kind}, {created.get('access')}; {stored})")


# --- skiff history ------------------------------------------------------------

def describe(entry: dict[str, Any]) -> list[str]:
    who = entry.get("created_by") or "?"
    lines = [f"{entry['ref']}  made {entry.get('created_at', '?')} by {who}"]
    facts = ("location", "format", "size_bytes", "digest")
    where = ", ".join(f"{k} {entry[k]}" for k in facts if entry.get(k))
    if where:
        lines.append(f"    {where}")
    run = entry.get("run")
    if not run:
        lines.append("    raw data (no run made it)")
    else:
        step = run.get("step") or run.get("task_id")
        version = f"@{run['step_version']}" if run.get("step_version") else ""
        lines.append(f"    run {run.get('run_id')} ({run.get('state') or '?'}): "
                     f"DAG {run.get('dag_id')} run {run.get('dag_run_id')}, step {step}{version}, "
                     f"user {run.get('user')}")
        if run.get("workflow"):
            lines.append(f"    workflow {run['workflow']}")
        if run.get("notebook"):
            lines.append(f"    notebook {run['notebook']}")
        if run.get("mlflow_run_id"):
            lines.append(f"    MLflow run {run['mlflow_run_id']}")
        if run.get("parameters"):
            lines.append("    parameters " + json.dumps(run["parameters"], sort_keys=True))
    if entry.get("inputs"):
        lines.append("    from " + ", ".join(entry["inputs"]))
    return lines


def parse_overrides(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``KEY=VALUE`` options; a VALUE that parses as JSON (false, 3, "x") is taken as such."""
    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--param")
        try:
            overrides[key] = json.loads(value)
        except ValueError:
            overrides[key] = value
    return overrides


def reproduce(history: dict[str, Any], credentials: tuple[str, str] | None,
              overrides: dict[str, Any] | None = None) -> tuple[str, str]:
    """Trigger the DAG that made the version, with its recorded parameters; (dag id, new run id).

    ``overrides`` replace recorded parameters, e.g. to pin the data to the stored
    training file where the recorded run read a table that has grown since.
    """
    from skiff import airflow_api
    from skiff.native.context import Context

    chain = history.get("chain") or []
    run = (chain[0].get("run") if chain else None) or {}
    if not run.get("dag_id"):
        raise CatalogError(f"{chain[0]['ref'] if chain else 'this version'} was not made by a recorded "
                           "DAG run: nothing to reproduce")
    if credentials is None:
        raise CatalogError("--reproduce triggers Airflow as you: give --user (SKIFF_TOKEN alone "
                           "cannot log in to Airflow)")
    ctx = Context.discover()
    with airflow_api.client(ctx, credentials[0], credentials[1]) as api:
        new_run = airflow_api.trigger(api, run["dag_id"],
                                      {**dict(run.get("parameters") or {}), **(overrides or {})})
    return str(run["dag_id"]), new_run


@click.command()
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Print the history as JSON.")
@click.option("--reproduce", "again", is_flag=True,
              help="Trigger the DAG that made it again with the recorded parameters; prints the new run id.")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
              help="With --reproduce: replace a recorded parameter (repeatable; JSON values, "
                   "e.g. include_captured=false).")
@_user_option
@click.option("--url", default=None, help="The catalog's base URL (default: CATALOG_URL, or this stack's).")
@click.pass_context
def history(ctx: click.Context, ref: str, as_json: bool, again: bool, params: tuple[str, ...],
            user: str | None, url: str | None) -> None:
    """Where KIND/NAME[@VERSION] came from: its run, parameters and inputs, back to the raw data."""
    try:
        r = parse_ref(ref)
    except ValueError as exc:
        _fail(str(exc))
        raise
    if params and not again:
        _fail("--param replaces recorded parameters of --reproduce; give --reproduce too")
    obj = _prepare(ctx.ensure_object(dict), user, url)
    found = _call(obj, lambda c: c.history(str(r)))
    if as_json:
        _print_json(found)
    else:
        for entry in found.get("chain", []):
            for line in describe(entry):
                # Parameters are the user's text: no markup, and no wrapping inside values.
                out.print(line, highlight=False, markup=False, soft_wrap=True)
    if again:
        try:
            dag_id, new_run = reproduce(found, obj["credentials"], parse_overrides(params))
        except (CatalogError, RuntimeError) as exc:
            _fail(str(exc))
            raise
        click.echo(f"triggered {dag_id} run {new_run}", err=as_json)
        if not as_json:
            out.print(f"follow it: skiff history {r.asset} once it has finished")
