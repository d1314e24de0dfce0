"""Two teams and their people in the real Keycloak, fresh per test module or session.

alice and bob are in team A, carol in team B (``add`` makes more, e.g. someone in
both); each is a data scientist with a random suffix, so reruns never meet
earlier users, and ``delete`` removes them afterwards. ``client(who)`` is the
catalog as that user (password grant), ``run_cli`` the ``skiff`` command as them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from skiff import keycloak
from skiff.catalog import Client
from skiff.native.context import Context
from skiff.pipelines.spec import identifier


@dataclass
class People:
    ctx: Context
    suffix: str
    team_a: str
    team_b: str
    prefix: str = "p"
    passwords: dict[str, str] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)

    def dag_id(self, who: str, stem: str) -> str:
        """A DAG id ``who`` may register: their namespace (what Elyra names their pipelines)."""
        return f"{identifier(self.names[who])}__{stem}_{self.suffix}"

    def client(self, who: str) -> Client:
        return Client(username=self.names[who], password=self.passwords[who], settings=self.ctx.settings)

    def token(self, who: str) -> str:
        return keycloak.user_token(self.ctx.settings, self.names[who], self.passwords[who])

    def run_cli(self, who: str, *args: str, env: dict[str, str] | None = None,
                check: bool = True) -> subprocess.CompletedProcess[str]:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("SKIFF_")}
        environ.update({"SKIFF_USERNAME": self.names[who], "SKIFF_PASSWORD": self.passwords[who],
                        "COLUMNS": "200", **(env or {})})
        done = subprocess.run([sys.executable, "-m", "skiff.cli", *args], env=environ, cwd=self.ctx.root,
                              capture_output=True, text=True, timeout=300, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"skiff {' '.join(args)} failed ({done.returncode}):\n"
                                 f"{done.stdout}\n{done.stderr}")
        return done


    def add(self, who: str, team: str, also: str | None = None) -> str:
        """Create ``who`` in ``team`` (and in ``also``); returns the user name."""
        admin = keycloak.admin_client(self.ctx.settings)
        name = f"{self.prefix}-{who}-{self.suffix}"
        self.names[who] = name
        self.passwords[who] = keycloak.create_user(self.ctx.settings, name, "data-scientist", team,
                                                   admin=admin)
        if also is not None:
            user = keycloak.find_user(admin, name)
            assert user is not None
            admin.group_user_add(user["id"], keycloak.ensure_team(admin, also))
        return name

    def delete(self) -> None:
        admin = keycloak.admin_client(self.ctx.settings)
        for name in self.names.values():
            user = keycloak.find_user(admin, name)
            if user is not None:
                admin.delete_user(user["id"])


def create(ctx: Context, prefix: str) -> People:
    suffix = uuid.uuid4().hex[:8]
    people = People(ctx, suffix, team_a=f"{prefix}-a-{suffix}", team_b=f"{prefix}-b-{suffix}",
                    prefix=prefix)
    for who, team in (("alice", people.team_a), ("bob", people.team_a), ("carol", people.team_b)):
        people.add(who, team)
    return people


@contextmanager
def created(ctx: Context, prefix: str) -> Iterator[People]:
    people = create(ctx, prefix)
    try:
        yield people
    finally:
        people.delete()
