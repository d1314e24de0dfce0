"""The portal's HTML: the page frame, the landing page, messages; built with escaping
and no template files (the console's other pages: serving/portal/console.py).

(No package data to ship: the serving image installs the checkout with pip, and
plain Python modules travel without extra configuration.)
"""

from __future__ import annotations

from html import escape

from serving.portal.services import Status
from serving.portal.sessions import Identity

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 56rem; color: #1d2330;
       padding: 0 1rem; }
body > header { display: flex; justify-content: space-between; align-items: baseline; }
h1 { font-size: 1.6rem; margin: 0 0 1rem; }
table { border-collapse: collapse; width: 100%; margin-top: 1rem; }
th, td { text-align: left; padding: .55rem .6rem; border-bottom: 1px solid #e3e6ec; }
.up { color: #19793a; } .down { color: #b3261e; } .unknown { color: #6b7280; }
.who { background: #f4f6fa; padding: .8rem 1rem; border-radius: .4rem; }
.tag { display: inline-block; background: #e3e9f7; border-radius: .3rem; padding: 0 .4rem;
       margin-right: .25rem; font-size: .9em; }
small { color: #6b7280; }
nav { margin: 0 0 1rem; } nav a { margin-right: 1rem; }
h2 { font-size: 1.2rem; margin: 1.6rem 0 .4rem; }
.badge { display: inline-block; border-radius: .3rem; padding: 0 .45rem; font-size: .9em;
         background: #e3e6ec; }
.badge.success, .badge.up, .badge.FINISHED { background: #d5f0dc; color: #19793a; }
.badge.failed, .badge.critical, .badge.FAILED { background: #f9dcd9; color: #b3261e; }
.badge.warning { background: #fbecc7; color: #8a5a00; }
.badge.running { background: #dde8fb; color: #2c5fb3; }
.unavailable { background: #fdf3e1; border-left: 4px solid #c2571a; padding: .6rem 1rem; }
.event { border-bottom: 1px solid #e3e6ec; padding: .6rem 0; }
.event header { font-size: .9em; color: #6b7280; }
.event pre { background: #f4f6fa; padding: .5rem; overflow-x: auto; white-space: pre-wrap; margin: .3rem 0; }
.event img { max-width: 100%; max-height: 24rem; cursor: zoom-in; border: 1px solid #e3e6ec; }
.event iframe { width: 100%; min-height: 12rem; border: 1px solid #e3e6ec; }
.event table { width: auto; margin-top: .3rem; } .event td, .event th { padding: .2rem .6rem; }
.chart { max-width: 40rem; display: block; margin: .6rem 0; }
.chart .axis { stroke: #9aa1ad; } .chart .threshold { stroke: #b3261e; stroke-dasharray: 4 3; }
.chart text { font-size: 11px; fill: #4b5563; } .chart .chart-title { font-size: 13px; fill: #1d2330; }
"""
NAV = (("/", "Home"), ("/projects", "Projects"), ("/runs", "Runs"), ("/models", "Models"))


def _page(title: str, body: str, *, nav: bool = False, script: bool = False) -> str:
    """A whole page. ``nav``: the console's menu; ``script``: load /static/console.js
    (a file, never inline: the console's Content-Security-Policy allows 'self' scripts only).
    The empty icon keeps browsers from asking for /favicon.ico (a 404 in their console)."""
    menu = ("<nav>" + "".join(f"<a href=\"{href}\">{escape(label)}</a>" for href, label in NAV)
            + "</nav>") if nav else ""
    js = "<script src=\"/static/console.js\" defer></script>" if script else ""
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<link rel=\"icon\" href=\"data:,\">"
            f"<title>{escape(title)}</title><style>{STYLE}</style>{js}</head>"
            f"<body>{menu}{body}</body></html>")


def _tags(values: list[str] | tuple[str, ...], empty: str) -> str:
    if not values:
        return f"<small>{escape(empty)}</small>"
    return "".join(f"<span class=\"tag\">{escape(v)}</span>" for v in values)


def landing(who: Identity, rows: list[Status], roles: list[str], logout_url: str,
            extra: str = "") -> str:
    """The front page; ``extra``: the console's sections (projects, recent runs), already HTML."""
    health_class = {"up": "up", "down": "down"}
    lines = "".join(
        f"<tr><td><a href=\"{escape(r.url)}\">{escape(r.entry.title)}</a><br>"
        f"<small>{escape(r.entry.what)}</small></td>"
        f"<td><code>{escape(r.url)}</code></td>"
        f"<td class=\"{health_class.get(r.health, 'unknown')}\" data-service=\"{escape(r.entry.key)}\">"
        f"{escape(r.health)}{f' <small>({escape(r.detail)})</small>' if r.detail else ''}</td></tr>"
        for r in rows)
    body = f"""
<header><h1>Skiff</h1><a href="{escape(logout_url)}">Log out</a></header>
<section class="who">
  Signed in as <strong id="username">{escape(who.username)}</strong>
  {f"&lt;{escape(who.email)}&gt;" if who.email else ""}<br>
  Roles: <span id="roles">{_tags(roles, "none")}</span><br>
  Teams: <span id="teams">{_tags(who.groups, "none")}</span>
</section>
<table>
  <thead><tr><th>Service</th><th>Address</th><th>Health</th></tr></thead>
  <tbody>{lines}</tbody>
</table>
{extra}
"""
    return _page("Skiff", body, nav=True)


def message(title: str, escaped_message: str) -> str:
    body = (f"<h1>{escape(title)}</h1><p>{escaped_message}</p>"
            "<p><a href=\"/oauth2/start?rd=/\">Log in again</a> &middot; <a href=\"/\">Home</a></p>")
    return _page(title, body)
