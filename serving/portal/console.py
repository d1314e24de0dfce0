"""The console's pages: projects (catalog), runs and their events (notification
service), models with their monitoring charts (MLflow). Server-rendered, every
value escaped; live events are appended by /static/console.js (serving/portal/static.py).

Each page calls the services as the signed-in user (their access token, refreshed
by the portal); a service that is down turns into a notice on the page
("notifications service unavailable"), never into an error page.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from html import escape
from typing import Any
from urllib.parse import quote

from flask import Flask, Response

from serving.portal import charts
from serving.portal.apis import CATALOG, MLFLOW, NOTIFICATIONS, Apis, NotFound, Unavailable
from serving.portal.pages import _page
from serving.portal.sessions import Identity

# Where the browser reaches the notification service (Traefik strips /events).
EVENTS_API = "/events/api/v1"
# skiff.monitoring.results and skiff.monitoring.drift (the serving image installs
# skiff without its dependencies, so the names are repeated; a unit test compares them).
MONITORING_EXPERIMENT = "monitoring"
TAG_MODEL = "skiff.model.name"
TAG_VERSION = "skiff.model.version"
TAG_ALIAS = "skiff.model.alias"
PSI_ALERT = 0.2
P_ALERT = 0.01
CHAMPION_ALIAS = "champion"
# The console's Content-Security-Policy: scripts only from the portal itself (no
# inline ones, nothing external), images from here (event images via /events/) or data:.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; connect-src 'self'; frame-src 'self'; object-src 'none'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'self'")


@dataclass(frozen=True)
class SignedIn:
    who: Identity
    access_token: str


def html_response(body: str, status: int = 200) -> Response:
    return Response(body, status=status, mimetype="text/html",
                    headers={"Cache-Control": "no-store", "Content-Security-Policy": CSP})


def unavailable(exc: Unavailable | NotFound, upstream: str = "") -> str:
    """The notice for a service that could not answer (a 404 on a list: it is not
    the service we expect there, as good as unavailable)."""
    if isinstance(exc, NotFound):
        exc = Unavailable(upstream, f"HTTP 404 for {exc}")
    return f'<p class="unavailable" data-unavailable="{escape(exc.service)}">{escape(str(exc))}</p>'


def badge(text: str, kind: str = "") -> str:
    return f'<span class="badge {escape(kind or text)}">{escape(text)}</span>'


def _table(head: Iterable[str], rows: Iterable[Iterable[str]], empty: str, table_id: str = "") -> str:
    """``rows`` hold HTML already escaped."""
    lines = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    if not lines:
        return f"<p><small>{escape(empty)}</small></p>"
    ident = f' id="{escape(table_id)}"' if table_id else ""
    return (f"<table{ident}><thead><tr>" + "".join(f"<th>{escape(h)}</th>" for h in head)
            + f"</tr></thead><tbody>{lines}</tbody></table>")


def _values(values: Mapping[str, Any]) -> str:
    rows = [(f"<code>{escape(str(k))}</code>", escape(_plain(v))) for k, v in values.items()]
    return _table(("name", "value"), rows, "no values")


def when(iso: Any) -> str:
    """An ISO-8601 time as people read it, to the second (the same as console.js's)."""
    return str(iso or "").replace("T", " ")[:19]


def _plain(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


# --- projects --------------------------------------------------------------------------------

def project_link(name: str) -> str:
    return f'<a href="/projects/{quote(name, safe="")}">{escape(name)}</a>'


def projects_table(projects: list[dict[str, Any]]) -> str:
    rows = [(project_link(p["name"]), escape(p.get("description") or ""),
             escape(p.get("owner") or ""), escape(p.get("team") or "-"),
             badge(str(p.get("access") or "")))
            for p in projects]
    return _table(("Project", "Description", "Owner", "Team", "Access"), rows,
                  "no projects yet (create one with the catalog API or skiff.catalog)",
                  table_id="projects")


def project_page(project: dict[str, Any]) -> str:
    rows = [(f"<code>{escape(a['kind'])}</code>", escape(a["name"]),
             escape(a.get("description") or ""), escape(a.get("owner") or ""),
             escape(a.get("location") or ""), escape(str(a.get("latest_version") or "-")))
            for a in project.get("assets", [])]
    return (f"<h1>Project {escape(project['name'])}</h1>"
            f"<p>{escape(project.get('description') or '')}</p>"
            f"<p>Owner {escape(project.get('owner') or '')} &middot; team "
            f"{escape(project.get('team') or '-')} &middot; {badge(str(project.get('access')))}</p>"
            "<h2>Assets</h2>"
            + _table(("Kind", "Name", "Description", "Owner", "Location", "Version"), rows,
                     "no assets in this project", table_id="assets"))


# --- runs and events ---------------------------------------------------------------------

def run_link(run: str) -> str:
    return f'<a href="/runs/{quote(run, safe="/")}">{escape(run)}</a>'


RUN_COLUMNS = ("Run", "Workflow", "User", "Status", "Events", "Last event (UTC)")


def runs_table(runs: list[dict[str, Any]], live: bool = False) -> str:
    """The runs, newest first. ``live``: console.js follows the notification service's
    stream of every visible event and updates rows (or adds new runs on top)."""
    rows = "".join(
        f'<tr data-run="{escape(r["run"])}"><td>{run_link(r["run"])}</td>'
        f'<td>{escape(r.get("workflow") or "-")}</td><td>{escape(r.get("user") or "")}</td>'
        f'<td>{badge(str(r.get("status") or "-"))}</td><td>{escape(str(r.get("events", "")))}</td>'
        f'<td>{escape(when(r.get("last_time") or r.get("first_time")))}</td></tr>'
        for r in runs)
    if not runs and not live:
        return "<p><small>no runs yet</small></p>"
    stream = f' data-stream="{EVENTS_API}/stream"' if live else ""
    empty = "" if runs else '<p id="no-runs"><small>no runs yet (new ones appear here)</small></p>'
    head = "".join(f"<th>{escape(h)}</th>" for h in RUN_COLUMNS)
    return (f'{empty}<table id="runs"{stream}><thead><tr>{head}</tr></thead>'
            f"<tbody>{rows}</tbody></table>")


def content_url(event: Mapping[str, Any]) -> str:
    return f"{EVENTS_API}/events/{quote(str(event['id']), safe='')}/content"


def event_body(event: Mapping[str, Any]) -> str:
    """One event's payload as HTML (the same shapes static.py's JavaScript builds)."""
    kind, data, link = event.get("kind"), event.get("data") or {}, event.get("link")
    if kind == "image" and link:
        url = escape(content_url(event))
        return (f'<a href="{url}" target="_blank" rel="noopener"><img src="{url}" '
                f'alt="{escape(event.get("title") or link.get("name") or "image")}"></a>')
    if link:
        # A file, or a payload too large to travel inline: stored in S3, served by the service.
        name = link.get("name") or event.get("title") or "download"
        return (f'<a href="{escape(content_url(event))}" download="{escape(name)}">'
                f'{escape(name)}</a> <small>({escape(str(link.get("content_type") or ""))}, '
                f'{escape(str(link.get("size") or "?"))} bytes)</small>')
    if kind == "log":
        return f"<pre>{escape(str(data.get('text', '')))}</pre>"
    if kind in ("parameters", "metrics"):
        step = f"<small>step {escape(str(data['step']))}</small>" if data.get("step") is not None \
            else ""
        return step + _values(data.get("values") or {})
    if kind == "status":
        state = str(data.get("state") or "")
        return f"{badge(state)} {escape(str(data.get('message') or ''))}"
    if kind == "alert":
        severity = str(data.get("severity") or "warning")
        details = data.get("details") or {}
        return (f"{badge(severity)} {escape(str(data.get('message') or ''))}"
                + (_values(details) if details else ""))
    if kind == "html":
        # Sandboxed without allow-scripts: the markup is shown, never run as us.
        return f'<iframe sandbox="" srcdoc="{escape(str(data.get("html") or ""))}"></iframe>'
    return f"<pre>{escape(json.dumps(data, indent=1, default=str))}</pre>"


def event_html(event: Mapping[str, Any]) -> str:
    kind = str(event.get("kind") or "")
    step = f" &middot; {escape(str(event['step']))}" if event.get("step") else ""
    title = f" &middot; <strong>{escape(str(event['title']))}</strong>" if event.get("title") else ""
    return (f'<article class="event kind-{escape(kind)}" data-seq="{escape(str(event.get("seq", "")))}"'
            f' data-kind="{escape(kind)}"><header>{escape(when(event.get("time")))}'
            f"{step} &middot; {escape(kind)}{title}</header>{event_body(event)}</article>")


def run_page(run: str, events: list[dict[str, Any]] | None, problem: str = "") -> str:
    """Events rendered here; console.js opens the run's stream after the last one."""
    head = f"<h1>Run {escape(run)}</h1>"
    if events is None:
        return head + problem
    after = max((int(e["seq"]) for e in events if str(e.get("seq", "")).isdigit()), default=0)
    stream = f"{EVENTS_API}/runs/{quote(run, safe='/')}/stream"
    return (head + f'<p>Live: <span id="live" class="badge">connecting</span></p>'
            f'<section id="events" data-stream="{escape(stream)}" data-after="{after}" '
            f'data-content="{EVENTS_API}/events/">'
            + "".join(event_html(e) for e in events)
            + ("" if events else '<p id="no-events"><small>no events yet: they appear here as the '
               'run sends them (if it is yours to see)</small></p>')
            + "</section>")


# --- models ------------------------------------------------------------------------------

def champion_version(model: Mapping[str, Any]) -> str | None:
    for alias in model.get("aliases") or []:
        if alias.get("alias") == CHAMPION_ALIAS:
            return str(alias.get("version"))
    return None


def models_table(models: list[dict[str, Any]]) -> str:
    rows = []
    for m in models:
        champion = champion_version(m)
        rows.append((f'<a href="/models/{quote(m["name"], safe="")}">{escape(m["name"])}</a>',
                     escape(champion or "-"),
                     escape(", ".join(f"{a.get('alias')}→{a.get('version')}"
                                      for a in m.get("aliases") or []) or "-"),
                     escape(str(max((int(v["version"]) for v in m.get("latest_versions") or []),
                                    default="-")))))
    return _table(("Model", "Champion version", "Aliases", "Latest version"), rows,
                  "no registered models yet", table_id="models")


def _metrics(run: Mapping[str, Any]) -> dict[str, tuple[float, float]]:
    """name -> (time ms, value) of a run's metrics (the time is the window's end)."""
    return {m["key"]: (float(m.get("timestamp") or 0), float(m["value"]))
            for m in (run.get("data") or {}).get("metrics") or []}


def monitoring_series(runs: list[dict[str, Any]]) -> dict[str, list[charts.Point]]:
    """Per run: the largest PSI, how many features drifted (PSI at least PSI_ALERT and
    p below P_ALERT over the number of features, skiff.monitoring.drift's rule), live
    accuracy and AUC; each at the window's end."""
    out: dict[str, list[charts.Point]] = {"max_psi": [], "drifted": [], "accuracy": [], "roc_auc": []}
    for run in runs:
        metrics = _metrics(run)
        psi = {k[len("drift.psi."):]: v for k, v in metrics.items() if k.startswith("drift.psi.")}
        if psi:
            at = max(t for t, _ in psi.values())
            out["max_psi"].append((at, max(v for _, v in psi.values())))
            cut = P_ALERT / len(psi)
            out["drifted"].append((at, float(sum(
                1 for name, (_, value) in psi.items()
                if value >= PSI_ALERT and metrics.get(f"drift.p.{name}", (0, 1.0))[1] < cut))))
        for key in ("accuracy", "roc_auc"):
            if f"live.{key}" in metrics:
                out[key].append(metrics[f"live.{key}"])
    return out


def model_page(model: dict[str, Any], champion: dict[str, Any] | None,
               runs: list[dict[str, Any]] | None, problem: str = "") -> str:
    name = str(model["name"])
    if champion is None:
        champ = "<p>No version has the alias <code>champion</code> yet.</p>"
    else:
        tags = {t["key"]: t["value"] for t in champion.get("tags") or []}
        shown = {k: v for k, v in tags.items() if k.startswith(("skiff.monitoring.", "skiff.promotion."))}
        champ = (f'<p id="champion">Champion: version <strong>{escape(str(champion["version"]))}'
                 f"</strong> &middot; MLflow run <code>{escape(str(champion.get('run_id') or ''))}"
                 f"</code> &middot; {badge(str(champion.get('status') or ''))}</p>"
                 + (_values(shown) if shown else ""))
    body = (f"<h1>Model {escape(name)}</h1>{champ}"
            f'<p><a href="/mlflow/#/models/{quote(name, safe="")}">Open in MLflow</a></p>'
            "<h2>Monitoring</h2>")
    if runs is None:
        return body + problem
    series = monitoring_series(runs)
    body += (f"<p><small>{len(runs)} monitoring run(s) of the {CHAMPION_ALIAS} in the MLflow "
             f"experiment <code>{MONITORING_EXPERIMENT}</code>; each point is a window, "
             f"at its end.</small></p>")
    body += charts.line_chart("Largest PSI of any feature", [("max PSI", series["max_psi"])],
                              threshold=PSI_ALERT, y_min=0, chart_id="chart-psi")
    body += charts.line_chart("Drifted features", [("drifted", series["drifted"])], y_min=0,
                              chart_id="chart-drifted")
    body += charts.line_chart("Live quality", [("accuracy", series["accuracy"]),
                                               ("ROC AUC", series["roc_auc"])],
                              y_min=0, y_max=1, chart_id="chart-quality")
    return body


# --- the views ---------------------------------------------------------------------------

def register(app: Flask, apis: Apis, signed_in: Callable[[], SignedIn | None],
             login: Callable[[], Any]) -> None:
    """Add the console's routes; ``signed_in`` gives the session (None: ``login()``)."""

    def page(title: str, body: str, status: int = 200, script: bool = False) -> Response:
        return html_response(_page(title, body, nav=True, script=script), status)

    def not_found(what: str) -> Response:
        return page("Not found", f"<h1>Not found</h1><p>{escape(what)}</p>", 404)

    @app.get("/projects")
    def projects() -> Any:
        session = signed_in()
        if session is None:
            return login()
        try:
            body = projects_table(apis.projects(session.access_token))
        except (Unavailable, NotFound) as exc:
            body = unavailable(exc, CATALOG)
        return page("Projects", "<h1>Projects</h1>" + body)

    @app.get("/projects/<name>")
    def project(name: str) -> Any:
        session = signed_in()
        if session is None:
            return login()
        try:
            return page(f"Project {name}", project_page(apis.project(session.access_token, name)))
        except NotFound:
            return not_found(f"no project {name} that you can read")
        except Unavailable as exc:
            return page(f"Project {name}", f"<h1>Project {escape(name)}</h1>" + unavailable(exc))

    @app.get("/runs")
    def runs() -> Any:
        session = signed_in()
        if session is None:
            return login()
        try:
            body = ('<p>Live: <span id="live" class="badge">connecting</span></p>'
                    + runs_table(apis.runs(session.access_token, limit=200), live=True))
        except (Unavailable, NotFound) as exc:
            return page("Runs", "<h1>Runs</h1>" + unavailable(exc, NOTIFICATIONS))
        return page("Runs", "<h1>Runs</h1>" + body, script=True)

    @app.get("/runs/<path:run>")
    def run(run: str) -> Any:
        session = signed_in()
        if session is None:
            return login()
        try:
            events = apis.events(session.access_token, run)
        except NotFound:
            # No event yet, or not this user's to see (the service answers both alike):
            # the page waits for the run's first event, which the stream shows only to
            # those allowed (a page opened as the run is triggered is the common case).
            events = []
        except Unavailable as exc:
            return page(f"Run {run}", run_page(run, None, unavailable(exc)))
        return page(f"Run {run}", run_page(run, events), script=True)

    @app.get("/models")
    def models() -> Any:
        if signed_in() is None:
            return login()
        try:
            body = models_table(apis.models())
        except (Unavailable, NotFound) as exc:
            body = unavailable(exc, MLFLOW)
        return page("Models", "<h1>Models</h1>" + body)

    @app.get("/models/<name>")
    def model(name: str) -> Any:
        if signed_in() is None:
            return login()
        try:
            found = apis.model(name)
            version = champion_version(found)
            champion = apis.model_version(name, version) if version else None
        except NotFound:
            return not_found(f"no registered model {name}")
        except Unavailable as exc:
            return page(f"Model {name}", f"<h1>Model {escape(name)}</h1>" + unavailable(exc))
        try:
            # The champion's monitoring (whichever version held the alias then); runs
            # under other aliases (tests, candidates) are not the served model's.
            runs: list[dict[str, Any]] | None = apis.monitoring_runs(
                MONITORING_EXPERIMENT, {TAG_MODEL: name, TAG_ALIAS: CHAMPION_ALIAS})
            problem = ""
        except (Unavailable, NotFound) as exc:
            runs, problem = None, unavailable(exc, MLFLOW)
        return page(f"Model {name}", model_page(found, champion, runs, problem))

    @app.get("/static/console.js")
    def console_js() -> Any:
        from serving.portal.static import CONSOLE_JS

        return Response(CONSOLE_JS, mimetype="text/javascript",
                        headers={"Cache-Control": "public, max-age=300"})
