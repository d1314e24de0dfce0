"""Two teams and three users in the real Keycloak, fresh per test module (helper C's tests).

alice and bob are in team A, carol in team B; each is a data scientist with a
random suffix, so reruns never meet earlier users. ``client(who)`` is the
catalog as that user (password grant), ``run_cli`` the ``skiff`` command as them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from dataclasses import dataclass, field

from skiff import keycloak
from skiff.catalog import Client
from skiff.native.context import Context


@dataclass
class People:
    ctx: Context
    suffix: str
    team_a: str
    team_b: str
    passwords: dict[str, str] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)

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


def create(ctx: Context, prefix: str) -> People:
    suffix = uuid.uuid4().hex[:8]
    people = People(ctx, suffix, team_a=f"{prefix}-a-{suffix}", team_b=f"{prefix}-b-{suffix}")
    admin = keycloak.admin_client(ctx.settings)
    for who, team in (("alice", people.team_a), ("bob", people.team_a), ("carol", people.team_b)):
        name = f"{prefix}-{who}-{suffix}"
        people.names[who] = name
        people.passwords[who] = keycloak.create_user(ctx.settings, name, "data-scientist", team,
                                                     admin=admin)
    return people
