"""The catalog's API against the running stack: real PostgreSQL, real Keycloak tokens.

Each access level is seen from each user: alice (owner, team a), bob (team a),
carol (team b), an admin; what one may not see is a 404, never a 403.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from skiff import keycloak
from skiff.native.context import Context
from tests.catalog.conftest import Api, World

pytestmark = pytest.mark.integration

LEVELS = ("private", "team", "public")
# Who reads / edits alice's asset of each level (alice and bob in team a, carol in team b).
READERS = {"private": {"alice"}, "team": {"alice", "bob"}, "public": {"alice", "bob", "carol"}}
EDITORS = {"private": {"alice"}, "team": {"alice", "bob"}, "public": {"alice", "bob"}}


def dataset(crowd: World, who: Api, stem: str, access: str, **extra: object) -> dict:
    body = {"kind": "dataset", "name": crowd.name(stem), "access": access, **extra}
    answer = who.post("/assets", json=body)
    assert answer.status_code == 201, answer.text
    return answer.json()


# --- who may call ---------------------------------------------------------------------------

def test_health_is_open_and_everything_else_needs_a_token(crowd: World) -> None:
    assert crowd.anonymous.get("/healthz").json() == {"status": "ok"}
    for path in ("/me", "/assets", "/projects"):
        answer = crowd.anonymous.get(path)
        assert answer.status_code == 401
        assert answer.json()["error"] == "unauthorized"
    assert crowd.anonymous.get("/openapi.json").status_code == 401
    assert "/api/v1/lineage" in crowd.alice.get("/openapi.json").json()["paths"]


def test_a_token_that_is_not_keycloaks_is_refused(crowd: World) -> None:
    forged = Api(crowd.alice.base, "not-a-jwt")
    answer = forged.get("/me")
    assert answer.status_code == 401
    assert answer.json()["error"] == "malformed_token"
    # A real token with its signature changed.
    head, body, signature = crowd.alice.token.split(".")  # type: ignore[union-attr]
    flipped = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    tampered = Api(crowd.alice.base, f"{head}.{body}.{flipped}")
    assert tampered.get("/me").json()["error"] == "bad_signature"


def test_tokens_of_other_clients_are_refused(crowd: World, stack) -> None:  # type: ignore[no-untyped-def]
    from skiff import keycloak

    # A real, valid token of the realm, but the devices' client's: not a way into the catalog.
    device = Api(crowd.alice.base, keycloak.device_token(stack.settings))
    answer = device.get("/me")
    assert (answer.status_code, answer.json()["error"]) == (401, "wrong_client")


def test_me_names_the_caller_and_their_teams(crowd: World) -> None:
    me = crowd.dave.get("/me").json()
    assert (me["user"], sorted(me["teams"]), me["admin"]) == \
        (crowd.dave.name, sorted([crowd.team_a, crowd.team_b]), False)
    assert crowd.admin.get("/me").json()["admin"] is True
    service = crowd.service.get("/me").json()
    assert (service["user"], service["admin"]) == ("service-account-airflow", True)


# --- access levels x users ------------------------------------------------------------------

@pytest.mark.parametrize("level", LEVELS)
def test_each_level_is_read_by_exactly_its_audience(crowd: World, level: str) -> None:
    made = dataset(crowd, crowd.alice, f"read-{level}", level)
    assert (made["owner"], made["team"], made["access"]) == (crowd.alice.name, crowd.team_a, level)
    for who in ("alice", "bob", "carol"):
        api: Api = getattr(crowd, who)
        answer = api.get(f"/assets/dataset/{made['name']}")
        listed = {a["ref"] for a in api.get("/assets", params={"kind": "dataset"}).json()["assets"]}
        if who in READERS[level]:
            assert answer.status_code == 200, (who, answer.text)
            assert made["ref"] in listed
        else:
            # Exactly what an absent asset gets: existence is not revealed.
            assert answer.status_code == 404, (who, answer.text)
            assert answer.json()["error"] == "not_found"
            assert made["ref"] not in listed
    assert crowd.admin.get(f"/assets/dataset/{made['name']}").status_code == 200


@pytest.mark.parametrize("level", LEVELS)
def test_each_level_is_edited_by_exactly_its_editors(crowd: World, level: str) -> None:
    made = dataset(crowd, crowd.alice, f"edit-{level}", level)
    for who in ("alice", "bob", "carol"):
        api: Api = getattr(crowd, who)
        answer = api.patch(f"/assets/dataset/{made['name']}", json={"description": f"by {who}"})
        if who in EDITORS[level]:
            assert answer.status_code == 200, (who, answer.text)
            assert answer.json()["description"] == f"by {who}"
        elif who in READERS[level]:
            assert answer.status_code == 403, (who, answer.text)
            assert answer.json()["error"] == "forbidden"
        else:
            assert answer.status_code == 404, (who, answer.text)
        if who not in EDITORS[level]:
            refused = api.delete(f"/assets/dataset/{made['name']}")
            assert refused.status_code == (403 if who in READERS[level] else 404)
    assert crowd.admin.patch(f"/assets/dataset/{made['name']}",
                             json={"description": "by admin"}).status_code == 200
    assert crowd.carol.get(f"/assets/dataset/{made['name']}").status_code == \
        (200 if level == "public" else 404)
    assert crowd.alice.delete(f"/assets/dataset/{made['name']}").status_code == 204
    assert crowd.alice.get(f"/assets/dataset/{made['name']}").status_code == 404


def test_narrowing_access_hides_the_asset_again(crowd: World) -> None:
    made = dataset(crowd, crowd.alice, "narrow", "public")
    assert crowd.carol.get(f"/assets/dataset/{made['name']}").status_code == 200
    changed = crowd.alice.patch(f"/assets/dataset/{made['name']}", json={"access": "private"})
    assert changed.json()["access"] == "private"
    assert crowd.carol.get(f"/assets/dataset/{made['name']}").status_code == 404
    assert crowd.bob.get(f"/assets/dataset/{made['name']}").status_code == 404


def test_teams_are_checked_against_the_callers_groups(crowd: World) -> None:
    answer = crowd.alice.post("/assets", json={"kind": "dataset", "name": crowd.name("foreign"),
                                               "access": "team", "team": crowd.team_b})
    assert answer.status_code == 422
    assert answer.json()["field"] == "team"
    # dave is in two teams: a team asset must say which.
    answer = crowd.dave.post("/assets", json={"kind": "dataset", "name": crowd.name("which"),
                                              "access": "team"})
    assert (answer.status_code, answer.json()["field"]) == (422, "team")
    made = crowd.dave.post("/assets", json={"kind": "dataset", "name": crowd.name("which"),
                                            "access": "team", "team": crowd.team_b})
    assert made.status_code == 201
    assert crowd.carol.get(f"/assets/dataset/{crowd.name('which')}").status_code == 200
    assert crowd.alice.get(f"/assets/dataset/{crowd.name('which')}").status_code == 404
    # An admin may hand an asset to any team.
    by_admin = crowd.admin.post("/assets", json={"kind": "model", "name": crowd.name("given"),
                                                 "access": "team", "team": crowd.team_b})
    assert by_admin.status_code == 201
    assert crowd.carol.get(f"/assets/model/{crowd.name('given')}").status_code == 200


def test_filters_list_only_what_matches(crowd: World) -> None:
    made = dataset(crowd, crowd.bob, "filterme", "team", description="heart rates of cohort 7")
    found = crowd.alice.get("/assets", params={"q": "cohort 7"}).json()["assets"]
    assert [a["ref"] for a in found] == [made["ref"]]
    by_owner = crowd.alice.get("/assets", params={"owner": crowd.bob.name}).json()["assets"]
    assert made["ref"] in {a["ref"] for a in by_owner}
    assert all(a["owner"] == crowd.bob.name for a in by_owner)
    assert crowd.alice.get("/assets", params={"kind": "model", "q": "cohort 7"}).json() == \
        {"assets": []}


# --- projects -------------------------------------------------------------------------------

def test_a_project_shows_each_caller_only_the_assets_they_may_read(crowd: World) -> None:
    project = crowd.alice.post("/projects", json={"name": crowd.name("proj"), "access": "public"})
    assert project.status_code == 201, project.text
    name = project.json()["name"]
    mine = dataset(crowd, crowd.alice, "proj-private", "private")
    shared = dataset(crowd, crowd.alice, "proj-team", "team")
    public = dataset(crowd, crowd.alice, "proj-public", "public", projects=[name])
    for made in (mine, shared):
        assert crowd.alice.put(f"/projects/{name}/assets/{made['ref']}").status_code == 200
    seen = {who: {a["ref"] for a in getattr(crowd, who).get(f"/projects/{name}").json()["assets"]}
            for who in ("alice", "bob", "carol")}
    assert seen == {"alice": {mine["ref"], shared["ref"], public["ref"]},
                    "bob": {shared["ref"], public["ref"]}, "carol": {public["ref"]}}
    assert name in crowd.alice.get(f"/assets/{public['ref']}").json()["projects"]
    only_in = crowd.alice.get("/assets", params={"project": name}).json()["assets"]
    assert {a["ref"] for a in only_in} == seen["alice"]
    # carol may read the public project but not change it, nor add what she cannot read.
    assert crowd.carol.put(f"/projects/{name}/assets/{public['ref']}").status_code == 403
    bob_adds = crowd.bob.put(f"/projects/{name}/assets/{mine['ref']}")
    assert bob_adds.status_code == 404
    assert crowd.alice.delete(f"/projects/{name}/assets/{mine['ref']}").status_code == 200
    assert mine["ref"] not in {a["ref"] for a in
                               crowd.alice.get(f"/projects/{name}").json()["assets"]}


def test_private_projects_are_hidden(crowd: World) -> None:
    made = crowd.alice.post("/projects", json={"name": crowd.name("secret-proj")}).json()
    assert made["access"] == "private"
    assert crowd.bob.get(f"/projects/{made['name']}").status_code == 404
    assert made["name"] not in {p["name"] for p in crowd.bob.get("/projects").json()["projects"]}
    assert made["name"] in {p["name"] for p in crowd.alice.get("/projects").json()["projects"]}
    again = crowd.bob.post("/projects", json={"name": made["name"]})
    assert again.status_code == 409


# --- bad requests ---------------------------------------------------------------------------

def test_malformed_json_is_a_400(crowd: World) -> None:
    answer = crowd.alice.post("/assets", content=b"{not json",
                              headers={"Content-Type": "application/json"})
    assert answer.status_code == 400
    assert answer.json()["error"] == "malformed_json"
    empty = crowd.alice.post("/assets")
    assert (empty.status_code, empty.json()["error"]) == (400, "malformed_json")


@pytest.mark.parametrize(("body", "field"), [
    ({"kind": "dataset"}, "name"),
    ({"kind": "table", "name": "x"}, "kind"),
    ({"kind": "dataset", "name": "-starts-badly"}, "name"),
    ({"kind": "dataset", "name": "ok", "access": "everyone"}, "access"),
    ({"kind": "dataset", "name": "ok", "colour": "red"}, "colour"),
    ({"kind": "dataset", "name": "ok", "size_bytes": -1}, "size_bytes"),
    ({"kind": "workflow", "name": "ok", "spec": {"engine": "cron", "dag_id": "d"}}, "spec.engine"),
    ({"kind": "workflow", "name": "ok", "spec": {"engine": "airflow", "dag_id": "d",
                                                 "uses": ["nothing-here"]}}, "spec.uses.0"),
    ({"kind": "service", "name": "ok", "spec": {"parameters": {}}}, "spec.version"),
    ({"kind": "service", "name": "ok", "spec": {"version": "1", "resources": {"cpu": -2}}},
     "spec.resources.cpu"),
    ({"kind": "data_source", "name": "ok", "spec": {"type": "s3"}}, "spec"),
    ({"kind": "data_source", "name": "ok", "spec": {"type": "s3", "s3": {"endpoint": "http://x"}}},
     "spec.s3.bucket"),
    ({"kind": "data_source", "name": "ok", "spec": {
        "type": "postgresql", "postgresql": {"host": "db", "port": 5432, "database": "d",
                                             "username": "u"}, "secret": {"pass": "x"}}},
     "spec.secret.password"),
    ({"kind": "data_source", "name": "ok", "spec": {
        "type": "s3", "managed": True, "s3": {"endpoint": "http://x", "bucket": "abc"}}},
     "spec.managed"),
    ("just a string", "body"),
])
def test_an_invalid_field_is_a_422_naming_it(crowd: World, body: object, field: str) -> None:
    answer = crowd.alice.post("/assets", json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == field, answer.json()
    assert answer.json()["message"].startswith(field)


@pytest.mark.parametrize("name", ["public", "user-mallory", "team-everyone"])
def test_the_platform_stores_names_are_reserved(crowd: World, name: str) -> None:
    # Taken first by a user, the name would keep the real store out of the catalog.
    answer = crowd.alice.post("/assets", json={
        "kind": "data_source", "name": name,
        "spec": {"type": "s3", "s3": {"endpoint": "http://x", "bucket": "abc"}}})
    assert (answer.status_code, answer.json()["error"]) == (422, "reserved_name"), answer.text
    assert answer.json()["field"] == "name"
    assert crowd.alice.post("/assets", json={"kind": "dataset", "name": crowd.name(name)}
                            ).status_code == 201


def test_unknown_assets_and_kinds_are_404s(crowd: World) -> None:
    missing = crowd.alice.get(f"/assets/dataset/{crowd.name('never-made')}")
    assert (missing.status_code, missing.json()["error"]) == (404, "not_found")
    assert missing.json()["asset"] == f"dataset/{crowd.name('never-made')}"
    kind = crowd.alice.get("/assets/table/x")
    assert (kind.status_code, kind.json()["error"]) == (404, "unknown_kind")
    assert crowd.alice.get("/nowhere").json()["error"] == "not_found"
    assert crowd.alice.patch(f"/assets/dataset/{crowd.name('never-made')}",
                             json={"description": "x"}).status_code == 404
    listing = crowd.alice.get("/assets", params={"kind": "table"})
    assert (listing.status_code, listing.json()["field"]) == (422, "kind")


def test_a_name_is_taken_once_per_kind(crowd: World) -> None:
    made = dataset(crowd, crowd.alice, "twice", "private")
    again = crowd.carol.post("/assets", json={"kind": "dataset", "name": made["name"]})
    assert (again.status_code, again.json()["error"]) == (409, "exists")
    other_kind = crowd.carol.post("/assets", json={"kind": "model", "name": made["name"]})
    assert other_kind.status_code == 201


# --- data sources: secrets never come back --------------------------------------------------

def test_secrets_are_stored_encrypted_and_never_returned(crowd: World, stack) -> None:  # type: ignore[no-untyped-def]
    access_key, secret_key = f"AK{crowd.suffix}XYZ", f"sk-{crowd.suffix}-very-secret"
    name = crowd.name("lake")
    answer = crowd.alice.post("/assets", json={
        "kind": "data_source", "name": name, "access": "team", "projects": [],
        "spec": {"type": "s3", "s3": {"endpoint": "http://s3.example:7070", "bucket": "lake"},
                 "secret": {"access_key": access_key, "secret_key": secret_key}}})
    assert answer.status_code == 201, answer.text
    assert answer.json()["spec"]["secret"] == {"stored": True, "fields": ["access_key", "secret_key"]}
    pg = crowd.alice.post("/assets", json={
        "kind": "data_source", "name": crowd.name("warehouse"), "spec": {
            "type": "postgresql", "secret": {"password": secret_key},
            "postgresql": {"host": "db", "port": 5432, "database": "dw", "username": "u"}}})
    assert pg.status_code == 201, pg.text
    texts = [answer.text, pg.text]
    for who in (crowd.alice, crowd.bob, crowd.admin):
        texts.append(who.get(f"/assets/data_source/{name}").text)
        texts.append(who.get("/assets", params={"kind": "data_source"}).text)
    # Changing the description keeps the secret without ever showing it.
    kept = crowd.bob.patch(f"/assets/data_source/{name}", json={"description": "the lake"})
    texts.append(kept.text)
    assert kept.json()["spec"]["secret"]["stored"] is True
    # Sending back what GET showed keeps the stored secret too.
    echoed = crowd.alice.patch(f"/assets/data_source/{name}",
                               json={"spec": crowd.alice.get(f"/assets/data_source/{name}")
                                     .json()["spec"]})
    assert echoed.status_code == 200, echoed.text
    texts.append(echoed.text)
    assert not [t for t in texts if access_key in t or secret_key in t]
    # Only a managed store's owner gets credentials; this one is not managed.
    assert crowd.alice.get(f"/assets/data_source/{name}/credentials").status_code == 403
    assert crowd.carol.get(f"/assets/data_source/{name}/credentials").status_code == 404
    # At rest: a Fernet token that opens with CATALOG_SECRET_KEY, no clear text.
    import psycopg
    from cryptography.fernet import Fernet

    s = stack.settings
    with psycopg.connect(host=s.host("postgres"), port=s.postgres_port, user="catalog",
                         password=s.catalog_db_password.get_secret_value(), dbname="catalog") as db:
        row = db.execute("SELECT secret, spec::text FROM assets WHERE kind = 'data_source' AND "
                         "name = %s", (name,)).fetchone()
    assert row is not None
    sealed, spec_text = row
    assert secret_key not in sealed and secret_key not in spec_text and access_key not in spec_text
    opened = Fernet(s.catalog_secret_key.get_secret_value().encode()).decrypt(sealed.encode())
    assert secret_key.encode() in opened


def test_the_api_is_published_under_catalog_behind_traefik(crowd: World, stack) -> None:  # type: ignore[no-untyped-def]
    import ssl

    import httpx

    trust = ssl.create_default_context(cafile=str(stack.root / "certs" / "ca.crt"))
    public = f"{stack.settings.public_url}/catalog"
    assert httpx.get(f"{public}/healthz", verify=trust, timeout=10).json() == {"status": "ok"}
    me = httpx.get(f"{public}/api/v1/me", verify=trust, timeout=30,
                   headers={"Authorization": f"Bearer {crowd.bob.token}"})
    assert me.json()["user"] == crowd.bob.name
    assert httpx.get(f"{public}/api/v1/me", verify=trust, timeout=10).status_code == 401


def test_managed_stores_hand_their_keys_to_their_owner_only(crowd: World) -> None:
    assert crowd.alice.post(f"/users/{crowd.bob.name}/provision",
                            json={"teams": [crowd.team_a]}).status_code == 403
    answer = crowd.service.post(f"/users/{crowd.bob.name}/provision",
                                json={"teams": [crowd.team_a]})
    assert answer.status_code == 200, answer.text
    if not answer.json()["provisioned"]:
        pytest.skip(f"no data-source provisioning here: {answer.json()['reason']}")
    own = [r for r in answer.json()["data_sources"] if r.startswith("data_source/user-")]
    assert len(own) == 1, answer.json()
    ref = own[0]
    shown = crowd.bob.get(f"/assets/{ref}").json()
    assert (shown["owner"], shown["access"], shown["spec"]["managed"]) == \
        (crowd.bob.name, "private", True)
    assert shown["spec"]["secret"] == {"stored": True, "fields": ["access_key", "secret_key"]}
    keys = crowd.bob.get(f"/assets/{ref}/credentials")
    assert keys.status_code == 200, keys.text
    secret = keys.json()["spec"]["secret"]
    assert secret["access_key"] and secret["secret_key"]
    assert secret["secret_key"] not in crowd.bob.get(f"/assets/{ref}").text
    # Nobody else gets them, not even an admin; the platform's store stays as it is.
    assert crowd.alice.get(f"/assets/{ref}/credentials").status_code == 404
    assert crowd.admin.get(f"/assets/{ref}/credentials").status_code == 403
    assert crowd.bob.patch(f"/assets/{ref}", json={"access": "public"}).status_code == 403
    assert crowd.bob.delete(f"/assets/{ref}").status_code == 403
    assert crowd.bob.patch(f"/assets/{ref}", json={"description": "mine"}).status_code == 200


def test_a_new_users_first_calls_at_once_all_succeed(stack: Context, crowd: World) -> None:
    # Two browser tabs at first login: both provision, and neither may fail on the other.
    settings = stack.settings
    name = f"eve-{crowd.suffix}"
    password = keycloak.create_user(settings, name, "data-scientist", crowd.team_b)
    eve = Api(crowd.alice.base, keycloak.user_token(settings, name, password), name)
    try:
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: eve.get("/me"), range(4)))
        assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
        assert all(a.json()["user"] == name for a in answers)
        mine = eve.get("/assets", params={"kind": "data_source"}).json()["assets"]
        assert f"data_source/user-{name}" in {a["ref"] for a in mine}
    finally:
        admin = keycloak.admin_client(settings)
        user = keycloak.find_user(admin, name)
        if user is not None:
            admin.delete_user(user["id"])
