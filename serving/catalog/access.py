"""Who may read and edit what: the access levels of projects and assets.

- read: private -> owner; team -> owner and members of the item's team;
  public -> everyone signed in. Admins read everything.
- edit/delete: owner; members of the item's team when access is team or public;
  admins always.

Something a caller may not read is answered 404, exactly like something absent.
"""

from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy import ColumnElement, and_, or_, true

from serving.catalog.auth import Caller
from serving.catalog.errors import ApiError


class Guarded(Protocol):
    owner: str
    team: str | None
    access: str


def can_read(caller: Caller, item: Guarded) -> bool:
    if caller.admin or item.owner == caller.user or item.access == "public":
        return True
    return item.access == "team" and caller.in_team(item.team)


def can_edit(caller: Caller, item: Guarded) -> bool:
    if caller.admin or item.owner == caller.user:
        return True
    return item.access in ("team", "public") and caller.in_team(item.team)


def visible(caller: Caller, model: Any) -> ColumnElement[bool]:
    """The SQL condition selecting the rows of ``model`` the caller may read."""
    if caller.admin:
        return true()
    return or_(model.owner == caller.user, model.access == "public",
               and_(model.access == "team", model.team.in_(caller.teams)))


def check_team(caller: Caller, team: str | None, access: str) -> None:
    """A team/public item needs a team, and a caller may only hand items to their own teams."""
    if team is not None and not caller.admin and team not in caller.teams:
        mine = ", ".join(caller.teams) or "none"
        raise ApiError(422, "invalid", f"team: you are not a member of team {team!r} "
                       f"(your teams: {mine})", field="team")
    if access in ("team", "public") and not team:
        raise ApiError(422, "invalid", f"team: access {access} needs a team; you are in "
                       f"{len(caller.teams)} teams, name one", field="team")


def initial_team_access(caller: Caller, team: str | None,
                        access: str | None) -> tuple[str | None, str]:
    """Defaults: access private; team the caller's only team when they are in exactly one."""
    access = access or "private"
    if team is None and len(caller.teams) == 1:
        team = caller.teams[0]
    check_team(caller, team, access)
    return team, access
