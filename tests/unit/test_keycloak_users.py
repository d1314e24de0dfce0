"""`skiff users` where no Keycloak is needed: what it refuses, and how it says so."""

from __future__ import annotations

import socket

import pytest
from click.testing import CliRunner

from skiff import keycloak as kc
from skiff.users import users

pytestmark = pytest.mark.unit


@pytest.fixture
def no_keycloak(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any call to Keycloak fails the test: these errors must come before the network."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("Keycloak was called")

    monkeypatch.setattr(kc, "admin_client", refuse)


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(users, list(args))
    return result.exit_code, result.output


def test_an_unknown_role_is_refused_with_the_five_roles(no_keycloak: None) -> None:
    code, output = run("add", "alice", "--team", "fraud", "--role", "superuser")
    assert code == 1
    assert "unknown role 'superuser'" in output
    for role in kc.ROLES:
        assert role in output


@pytest.mark.parametrize("name", ["Alice", "al", "has space", ".dot", "x" * 64, "é"])
def test_a_user_name_keycloak_would_change_or_refuse_is_refused(no_keycloak: None, name: str) -> None:
    code, output = run("add", name, "--team", "fraud", "--role", "viewer")
    assert code == 1
    assert "invalid user name" in output


@pytest.mark.parametrize("team", ["/fraud", "", "a/b", " lead"])
def test_a_team_that_is_not_a_plain_group_name_is_refused(no_keycloak: None, team: str) -> None:
    code, output = run("add", "alice", "--team", team, "--role", "viewer")
    assert code == 1
    assert "invalid team" in output


@pytest.mark.parametrize("missing", ["--team", "--role"])
def test_team_and_role_are_required(no_keycloak: None, missing: str) -> None:
    args = {"--team": "fraud", "--role": "viewer"}
    del args[missing]
    code, output = run("add", "alice", *[x for kv in args.items() for x in kv])
    assert code == 2
    assert f"Missing option '{missing}'" in output


def test_help_explains_the_roles() -> None:
    code, output = run("add", "--help")
    assert code == 0
    for role in kc.ROLES:
        assert role in output
    assert "generated and printed once" in " ".join(output.split())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_keycloak_that_does_not_answer_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEYCLOAK_PORT", str(_free_port()))
    code, output = run("list")
    assert code == 1
    assert "Keycloak does not answer at http://127.0.0.1:" in output
    assert "skiff up keycloak" in output


def test_generated_passwords_are_long_and_different() -> None:
    first, second = kc.generate_password(), kc.generate_password()
    assert first != second and len(first) >= 16
