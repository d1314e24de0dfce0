"""``skiff users``: the platform's people, their roles and teams, in Keycloak.

A user has one realm role (what they may do everywhere) and belongs to teams
(Keycloak groups; tokens carry them as ``groups``). The commands talk to the
running Keycloak's admin API at the internal address, as the master realm's
bootstrap admin from .env.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, NoReturn

import click
from rich.console import Console
from rich.table import Table

from skiff.native.context import Context

if TYPE_CHECKING:
    from keycloak import KeycloakAdmin

out = Console()
err = Console(stderr=True)

ROLE_HELP = """\b
Roles (realm roles of Keycloak's realm skiff):
  admin           administers the platform: every service, users and teams
  data-engineer   writes and runs pipelines and DAGs, manages data
  data-scientist  notebooks, experiments and models; runs pipelines
  citizen         runs and views pipelines, writes no code
  viewer          reads dashboards, runs and models; changes nothing
"""


def fail(message: str) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    sys.exit(1)


def admin_or_exit(ctx: Context) -> KeycloakAdmin:
    """The admin client, or a clear error when Keycloak does not answer."""
    from keycloak.exceptions import KeycloakError

    from skiff import keycloak as kc

    s = ctx.settings
    try:
        admin = kc.admin_client(s)
        admin.get_realm(s.keycloak_realm)
    except KeycloakError as exc:
        where = s.keycloak_internal_url
        if exc.response_code is None:
            fail(f"Keycloak does not answer at {where} ({kc.describe(exc)}); "
                  "start it: skiff up keycloak")
        if exc.response_code in (400, 401):
            fail(f"Keycloak at {where} refused the master realm's admin {s.keycloak_admin_user!r} "
                  f"({kc.describe(exc)}); check KEYCLOAK_ADMIN_USER and KEYCLOAK_ADMIN_PASSWORD "
                  "in .env")
        fail(f"Keycloak at {where}: realm {s.keycloak_realm!r}: {kc.describe(exc)}")
    return admin


@click.group(epilog=ROLE_HELP)
def users() -> None:
    """Add and list the platform's users (Keycloak realm skiff).

    \b
    skiff users add alice --team fraud --role data-scientist
    skiff users list
    """


@users.command("add", epilog=ROLE_HELP)
@click.argument("name")
@click.option("--team", required=True, metavar="TEAM",
              help="The user's team (a Keycloak group, created if it does not exist).")
@click.option("--role", required=True, metavar="ROLE",
              help="One of admin, data-engineer, data-scientist, citizen, viewer.")
@click.option("--email", default=None, help="E-mail address (optional).")
@click.option("--password", default=None,
              help="Initial password; when left out, one is generated and printed once.")
def add(name: str, team: str, role: str, email: str | None, password: str | None) -> None:
    """Create user NAME with one ROLE, in TEAM.

    Prints the password once when it was generated: hand it to the user, it is
    not stored anywhere else.
    """
    from keycloak.exceptions import KeycloakError

    from skiff import keycloak as kc

    # Checked before any network call: a typo should not need a running Keycloak.
    try:
        kc.check_username(name)
        kc.check_role(role)
        kc.check_team(team)
    except kc.UserError as exc:
        fail(str(exc))
    ctx = Context.discover()
    admin = admin_or_exit(ctx)
    try:
        chosen = kc.create_user(ctx.settings, name, role, team, password, email=email, admin=admin)
    except kc.UserError as exc:
        fail(str(exc))
    except KeycloakError as exc:
        fail(f"Keycloak refused to create {name!r}: {kc.describe(exc)}")
    out.print(f"created user [bold]{name}[/] (role {role}, team {team}) in realm "
              f"{ctx.settings.keycloak_realm}; sign in at {ctx.settings.public_url}/")
    _provision_data_sources(ctx, name, [team])
    if password is None:
        # Printed once, on stdout alone, so it can be piped to a password manager.
        out.print(f"password: {chosen}", highlight=False, markup=False)


def _provision_data_sources(ctx: Context, name: str, teams: list[str]) -> None:
    """Ask the catalog for the user's S3 stores now; when it cannot, the first login will.

    The catalog does the work (serving/catalog/stores.py): it holds the S3 root
    keys and the database the stores are registered in.
    """
    import httpx
    from keycloak.exceptions import KeycloakError

    from skiff import keycloak as kc
    from skiff.services.catalog import internal_url

    s = ctx.settings
    url = f"{internal_url(s)}/api/v1/users/{name}/provision"
    later = "they are created when the user first signs in"
    try:
        resp = httpx.post(url, json={"teams": teams}, timeout=60,
                          headers={"Authorization": f"Bearer {kc.service_token(s)}"})
    except (httpx.HTTPError, KeycloakError) as exc:
        err.print(f"[yellow]warning:[/] data sources of {name} not created ({exc}); {later}",
                  highlight=False)
        return
    answer = resp.json() if resp.headers.get("content-type", "").startswith("application/json") \
        else {}
    if resp.status_code != 200 or not answer.get("provisioned"):
        why = answer.get("reason") or answer.get("message") or resp.text[:200]
        err.print(f"[yellow]warning:[/] data sources of {name} not created (catalog: HTTP "
                  f"{resp.status_code} {why}); {later}", highlight=False)
        return
    out.print(f"data sources: {', '.join(answer.get('data_sources', []))}", highlight=False)


@users.command("list")
def list_() -> None:
    """Show every user with their roles, teams and whether the account is enabled."""
    from keycloak.exceptions import KeycloakError

    from skiff import keycloak as kc

    ctx = Context.discover()
    admin = admin_or_exit(ctx)
    try:
        rows = kc.list_users(admin)
    except KeycloakError as exc:
        fail(f"listing users failed: {kc.describe(exc)}")
    table = Table(title=f"Users of realm {ctx.settings.keycloak_realm}")
    for col in ("user", "roles", "teams", "enabled"):
        table.add_column(col)
    for r in rows:
        table.add_row(r.name, ", ".join(r.roles) or "-", ", ".join(r.teams) or "-",
                      "yes" if r.enabled else "[red]no[/]")
    out.print(table)
