"""The catalog's rules without services: validation, access, the visibility rule, secrets."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from cryptography.fernet import Fernet

from serving.catalog import access, specs, workflows
from serving.catalog.auth import Caller
from serving.catalog.config import Config
from serving.catalog.crypto import Secrets
from serving.catalog.errors import ApiError
from serving.catalog.lineage import Dataset, asset_facet

pytestmark = pytest.mark.unit

ALICE = Caller("alice", ("a",), ("data-scientist",))
BOB = Caller("bob", ("a",), ("data-scientist",))
CAROL = Caller("carol", ("b",), ("data-scientist",))
ADMIN = Caller("root", (), ("admin",))
SERVICE = Caller("service-account-airflow", (), (), service=True)


@dataclass
class Item:
    owner: str
    team: str | None
    access: str
    ref: str = "dataset/x"
    kind: str = "dataset"


@pytest.mark.parametrize(("level", "readers", "editors"), [
    ("private", {"alice"}, {"alice"}),
    ("team", {"alice", "bob"}, {"alice", "bob"}),
    ("public", {"alice", "bob", "carol"}, {"alice", "bob"}),
])
def test_read_and_edit_rights(level: str, readers: set[str], editors: set[str]) -> None:
    item = Item("alice", "a", level)
    people = (ALICE, BOB, CAROL)
    assert {p.user for p in people if access.can_read(p, item)} == readers
    assert {p.user for p in people if access.can_edit(p, item)} == editors
    assert access.can_read(ADMIN, item) and access.can_edit(ADMIN, item)
    assert access.can_read(SERVICE, item) and access.can_edit(SERVICE, item)


def test_defaults_are_private_and_the_only_team() -> None:
    assert access.initial_team_access(ALICE, None, None) == ("a", "private")
    two = Caller("dave", ("a", "b"), ())
    assert access.initial_team_access(two, None, None) == (None, "private")
    with pytest.raises(ApiError) as refused:
        access.initial_team_access(two, None, "team")
    assert (refused.value.status, refused.value.extra["field"]) == (422, "team")
    with pytest.raises(ApiError):
        access.initial_team_access(ALICE, "b", "public")
    assert access.initial_team_access(ADMIN, "b", "public") == ("b", "public")


@pytest.mark.parametrize(("workflow", "used", "team", "refused"), [
    ("private", "private", "a", False), ("private", "team", "a", False),
    ("private", "public", "a", False), ("team", "private", "a", True),
    ("team", "team", "a", False), ("team", "public", "a", False),
    ("public", "private", "a", True), ("public", "team", "a", True),
    ("public", "public", "a", False), ("team", "team", "b", True),
])
def test_the_visibility_rule(workflow: str, used: str, team: str, refused: bool) -> None:
    problem = workflows.refusal("workflow/w", workflow, "a", Item("alice", team, used))  # type: ignore[arg-type]
    assert (problem is not None) == refused
    if problem:
        assert problem.startswith(f"{workflow} workflow/w")


def test_names_and_refs() -> None:
    assert specs.parse_ref("model/bracelet@3") == ("model", "bracelet", "3")
    assert specs.parse_ref("dataset/a.b_c-d") == ("dataset", "a.b_c-d", None)
    for bad in ("bracelet", "table/x", "model/", "model/-x", "model/x@", 7):
        with pytest.raises(ApiError):
            specs.parse_ref(bad)  # type: ignore[arg-type]
    assert specs.NAME.match("A" * 128) and not specs.NAME.match("A" * 129)


def test_a_data_source_needs_the_section_of_its_type() -> None:
    with pytest.raises(ApiError) as refused:
        specs.parse(specs.DataSourceSpec, {"type": "cassandra", "s3": {"endpoint": "e",
                                                                        "bucket": "abc"}}, "spec")
    assert "cassandra" in refused.value.message
    ok = specs.parse(specs.DataSourceSpec, {"type": "cassandra", "cassandra": {
        "hosts": ["c1"], "port": 9042, "keyspace": "k"}}, "spec")
    assert ok.cassandra is not None and ok.cassandra.hosts == ["c1"]


def test_every_error_is_listed() -> None:
    with pytest.raises(ApiError) as refused:
        specs.parse(specs.AssetCreate, {"kind": "x", "name": "-", "extra": 1})
    fields = {e["field"] for e in refused.value.extra["errors"]}
    assert fields == {"kind", "name", "extra"}


def test_secrets_round_trip_and_refuse_another_key() -> None:
    key = Fernet.generate_key().decode()
    # Long enough that the random base64 of the token cannot contain it by chance
    # (a two-letter secret did, one run in forty).
    secret = "correct horse battery staple"
    sealed = Secrets(key).seal({"password": secret})
    assert secret not in sealed
    assert Secrets(key).open(sealed) == {"password": secret}
    with pytest.raises(RuntimeError):
        Secrets(Fernet.generate_key().decode()).open(sealed)
    with pytest.raises(RuntimeError, match="Fernet key"):
        Secrets("short")


def test_config_fails_closed() -> None:
    with pytest.raises(RuntimeError, match="AUTH_ISSUER"):
        Config.from_env({"CATALOG_DATABASE_URL": "x", "AUTH_JWKS_URL": "x",
                         "CATALOG_SECRET_KEY": "x"})
    config = Config.from_env({"CATALOG_DATABASE_URL": "x", "AUTH_JWKS_URL": "x",
                              "CATALOG_SECRET_KEY": "x", "AUTH_ISSUER": "i"})
    assert "airflow" in config.clients and config.service_users == ("service-account-airflow",)


def test_datasets_without_a_facet_get_a_safe_name() -> None:
    facet = asset_facet(Dataset(namespace="s3://datasets", name="/a b/c.csv"), "inputs.0")
    assert (facet.kind, facet.name, facet.location) == \
        ("dataset", "s3-datasets.-a-b-c.csv", "s3://datasets/a b/c.csv")
    assert specs.NAME.match(facet.name)
