"""The portal's two HTML pages, built with escaping and no template files.

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
header { display: flex; justify-content: space-between; align-items: baseline; }
h1 { font-size: 1.6rem; margin: 0 0 1rem; }
table { border-collapse: collapse; width: 100%; margin-top: 1rem; }
th, td { text-align: left; padding: .55rem .6rem; border-bottom: 1px solid #e3e6ec; }
.up { color: #19793a; } .down { color: #b3261e; } .unknown { color: #6b7280; }
.who { background: #f4f6fa; padding: .8rem 1rem; border-radius: .4rem; }
.tag { display: inline-block; background: #e3e9f7; border-radius: .3rem; padding: 0 .4rem;
       margin-right: .25rem; font-size: .9em; }
small { color: #6b7280; }
"""


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{escape(title)}</title><style>{STYLE}</style></head>"
            f"<body>{body}</body></html>")


def _tags(values: list[str] | tuple[str, ...], empty: str) -> str:
    if not values:
        return f"<small>{escape(empty)}</small>"
    return "".join(f"<span class=\"tag\">{escape(v)}</span>" for v in values)


def landing(who: Identity, rows: list[Status], roles: list[str], logout_url: str) -> str:
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
"""
    return _page("Skiff", body)


def message(title: str, escaped_message: str) -> str:
    body = (f"<h1>{escape(title)}</h1><p>{escaped_message}</p>"
            "<p><a href=\"/oauth2/start?rd=/\">Log in again</a> &middot; <a href=\"/\">Home</a></p>")
    return _page(title, body)
