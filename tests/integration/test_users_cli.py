"""`skiff users add` and `skiff users list` against the running Keycloak, as a person runs them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator

import jwt
import pytest
from keycloak import KeycloakAdmin

from skiff import keycloak as kc
from skiff.native import launcher
from skiff.native.context import Context

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sso(ctx: Context, request: pytest.FixtureRequest) -> Context:
    if os.environ.get("SKIFF_TEST_MODE") == "compose":
        return request.getfixturevalue("stack")  # type: ignore[no-any-return]
    if {r.service: r.health for r in launcher.status(ctx)}.get("keycloak") != "healthy":
        launcher.up(ctx, ["keycloak"])
    return ctx


@pytest.fixture(scope="module")
def admin(sso: Context) -> KeycloakAdmin:
    return kc.admin_client(sso.settings)


def skiff(*args: str) -> subprocess.CompletedProcess[str]:
    # A wide terminal: the table's cells must not be wrapped for the assertions.
    return subprocess.run([sys.executable, "-m", "skiff.cli", *args], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "COLUMNS": "200"}, check=False)


@pytest.fixture
def names(admin: KeycloakAdmin) -> Iterator[tuple[str, str]]:
    """A fresh user name and team name; both removed from the realm afterwards."""
    suffix = uuid.uuid4().hex[:8]
    user, team = f"cli-test-{suffix}", f"cli-team-{suffix}"
    yield user, team
    found = kc.find_user(admin, user)
    if found:
        admin.delete_user(found["id"])
    for group in admin.get_groups({"search": team, "exact": True}):
        if group["name"] == team:
            admin.delete_group(group["id"])


def test_add_prints_a_generated_password_that_signs_in(sso: Context, names: tuple[str, str]) -> None:
    user, team = names
    done = skiff("users", "add", user, "--team", team, "--role", "citizen")
    assert done.returncode == 0, done.stderr
    match = re.search(r"^password: (\S+)$", done.stdout, re.M)
    assert match, done.stdout
    token = kc.user_token(sso.settings, user, match.group(1))
    assert kc.find_user(kc.admin_client(sso.settings), user) is not None
    claims = jwt.decode(token, options={"verify_signature": False})
    assert "citizen" in claims["realm_access"]["roles"]
    assert claims["groups"] == [team]


def test_a_given_password_is_not_printed(sso: Context, names: tuple[str, str]) -> None:
    user, team = names
    password = f"Given-{uuid.uuid4().hex}"
    done = skiff("users", "add", user, "--team", team, "--role", "viewer",
                 "--email", f"{user}@example.test", "--password", password)
    assert done.returncode == 0, done.stderr
    assert password not in done.stdout + done.stderr
    assert kc.user_token(sso.settings, user, password)


def test_list_shows_role_team_and_state(admin: KeycloakAdmin, names: tuple[str, str]) -> None:
    user, team = names
    assert skiff("users", "add", user, "--team", team, "--role", "data-engineer").returncode == 0
    done = skiff("users", "list")
    assert done.returncode == 0, done.stderr
    [row] = [line for line in done.stdout.splitlines() if user in line]
    cells = [c.strip() for c in re.split(r"[│┃|]", row) if c.strip()]
    assert cells == [user, "data-engineer", team, "yes"]
    # Service accounts (devices, Airflow...) are not people: not listed.
    assert "service-account-" not in done.stdout


def test_a_second_user_joins_the_existing_team(admin: KeycloakAdmin, names: tuple[str, str]) -> None:
    user, team = names
    other = f"{user}-b"
    try:
        assert skiff("users", "add", user, "--team", team, "--role", "viewer").returncode == 0
        assert skiff("users", "add", other, "--team", team, "--role", "viewer").returncode == 0
        groups = [g for g in admin.get_groups({"search": team, "exact": True}) if g["name"] == team]
        assert len(groups) == 1
        members = {m["username"] for m in admin.get_group_members(groups[0]["id"])}
        assert members == {user, other}
    finally:
        found = kc.find_user(admin, other)
        if found:
            admin.delete_user(found["id"])


def test_adding_an_existing_user_fails_and_changes_nothing(admin: KeycloakAdmin,
                                                           names: tuple[str, str]) -> None:
    user, team = names
    assert skiff("users", "add", user, "--team", team, "--role", "viewer").returncode == 0
    again = skiff("users", "add", user, "--team", "other-team", "--role", "admin")
    assert again.returncode == 1
    assert f"user '{user}' already exists" in again.stderr
    found = kc.find_user(admin, user)
    assert found is not None
    roles = {r["name"] for r in admin.get_realm_roles_of_user(found["id"])}
    assert "admin" not in roles
    assert not [g for g in admin.get_groups({"search": "other-team", "exact": True})
                if g["name"] == "other-team"]
