"""skiff.catalog.Client and `skiff catalog` against the running catalog, as real Keycloak users.

Two teams, three users (tests/catalog/people.py): alice and bob in team A, carol
in team B. What one user registers, the others see or not according to its
access level, through the Python client and through the CLI; a data source's
secret goes in through the environment and never comes back out.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from skiff.catalog import CatalogError, Client
from tests.catalog.people import People

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def alice(people: People) -> Iterator[Client]:
    with people.client("alice") as client:
        yield client


def _visible(client: Client, prefix: str) -> set[str]:
    return {a["ref"] for a in client.assets(q=prefix)}


def test_each_access_level_seen_by_each_user_through_the_client(people: People, alice: Client) -> None:
    base = f"cc-data-{people.suffix}"
    alice.register("dataset", f"{base}-private", access="private")
    alice.register("dataset", f"{base}-team", access="team", team=people.team_a)
    alice.register("dataset", f"{base}-public", access="public", team=people.team_a)
    refs = {level: f"dataset/{base}-{level}" for level in ("private", "team", "public")}

    assert _visible(alice, base) == set(refs.values())
    with people.client("bob") as bob:
        assert _visible(bob, base) == {refs["team"], refs["public"]}
        with pytest.raises(CatalogError) as hidden:
            bob.asset(refs["private"])
        assert hidden.value.status == 404
    with people.client("carol") as carol:
        assert _visible(carol, base) == {refs["public"]}
        with pytest.raises(CatalogError) as hidden:
            carol.asset(refs["team"])
        assert hidden.value.status == 404


def test_a_token_in_skiff_token_is_used(people: People, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKIFF_TOKEN", people.token("carol"))
    monkeypatch.setenv("CATALOG_URL", f"http://{people.ctx.settings.host('catalog')}:"
                                      f"{people.ctx.settings.catalog_port}")
    with Client() as client:
        me = client.me()
    assert me["user"] == people.names["carol"]
    assert people.team_b in me["teams"]


def test_a_bad_token_is_refused_with_the_catalogs_reason() -> None:
    with Client(url=None, token="not-a-jwt") as client, pytest.raises(CatalogError) as refused:
        client.me()
    assert refused.value.status == 401
    assert refused.value.error


def test_the_cli_registers_changes_access_and_lists(people: People) -> None:
    name = f"cc-cli-{people.suffix}"
    people.run_cli("alice", "catalog", "assets", "register", f"dataset/{name}", "--location",
                   f"s3://team-x/{name}.csv", "--format", "csv", "--description", "made by the CLI")
    seen_by_bob = people.run_cli("bob", "catalog", "assets", "list", "--q", name, "--json")
    assert json.loads(seen_by_bob.stdout) == []

    changed = people.run_cli("alice", "catalog", "assets", "set-access", f"dataset/{name}", "team",
                             "--team", people.team_a)
    assert "is now team" in changed.stdout
    seen_by_bob = json.loads(people.run_cli("bob", "catalog", "assets", "list", "--q", name,
                                            "--json").stdout)
    assert [a["ref"] for a in seen_by_bob] == [f"dataset/{name}"]
    assert seen_by_bob[0]["location"] == f"s3://team-x/{name}.csv"
    seen_by_carol = json.loads(people.run_cli("carol", "catalog", "assets", "list", "--q", name,
                                              "--json").stdout)
    assert seen_by_carol == []


def test_the_cli_names_what_is_wrong(people: People) -> None:
    bad_kind = people.run_cli("alice", "catalog", "assets", "show", "table/x", check=False)
    assert bad_kind.returncode == 1
    assert "unknown kind 'table'" in bad_kind.stderr
    missing = people.run_cli("alice", "catalog", "assets", "show", f"dataset/nope-{people.suffix}",
                             check=False)
    assert missing.returncode == 1
    assert "404" in missing.stderr


def test_a_data_sources_secret_is_read_from_the_environment_and_never_shown(people: People) -> None:
    name = f"cc-pg-{people.suffix}"
    password = f"pw-{people.suffix}-do-not-print"
    added = people.run_cli("alice", "catalog", "data-sources", "add", name, "--type", "postgresql",
                           "--host", "db.example.org", "--database", "sales", "--username", "reader",
                           env={"SKIFF_DS_PASSWORD": password})
    assert "secret stored encrypted" in added.stdout
    assert password not in added.stdout + added.stderr

    shown = people.run_cli("alice", "catalog", "assets", "show", f"data_source/{name}")
    assert password not in shown.stdout
    spec = json.loads(shown.stdout)["spec"]
    assert spec["postgresql"]["host"] == "db.example.org"
    assert spec["secret"]["stored"] is True
    assert "password" in spec["secret"]["fields"]


def test_projects_group_assets_from_the_cli(people: People, alice: Client) -> None:
    project = f"cc-forecast-{people.suffix}"
    asset = f"cc-proj-data-{people.suffix}"
    alice.register("dataset", asset, access="team", team=people.team_a)
    people.run_cli("alice", "catalog", "projects", "create", project, "--team", people.team_a,
                   "--access", "team", "--description", "Sales Forecast 2025")
    people.run_cli("alice", "catalog", "projects", "add", project, f"dataset/{asset}")
    with people.client("bob") as bob:
        shown = bob.project(project)
    assert [a["ref"] for a in shown["assets"]] == [f"dataset/{asset}"]
    with people.client("carol") as carol, pytest.raises(CatalogError) as hidden:
        carol.project(project)
    assert hidden.value.status == 404
