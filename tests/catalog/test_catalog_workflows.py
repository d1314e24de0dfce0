"""The visibility rule on real workflows: refused where a workflow reaches wider than its data."""

from __future__ import annotations

import pytest

from skiff.pipelines.spec import identifier
from tests.catalog.conftest import Api, World
from tests.catalog.people import People

pytestmark = pytest.mark.integration

LEVELS = ("private", "team", "public")
# (workflow access, used asset access) pairs that are refused; all others are allowed.
FORBIDDEN = {("team", "private"), ("public", "private"), ("public", "team")}


@pytest.fixture(scope="module")
def used(crowd: World) -> dict[str, str]:
    """alice's datasets, one per level: level -> ref."""
    refs = {}
    for level in LEVELS:
        answer = crowd.alice.post("/assets", json={"kind": "dataset", "access": level,
                                                   "name": crowd.name(f"wf-input-{level}")})
        assert answer.status_code == 201, answer.text
        refs[level] = answer.json()["ref"]
    return refs


def own_dag(who: Api, name: str) -> str:
    """A DAG id in ``who``'s namespace, the only ones a person may register."""
    return f"{identifier(who.name)}__{name.replace('-', '_')}"


def workflow(crowd: World, who: Api, stem: str, access: str, uses: list[str],
             **extra: object) -> dict:
    return {"kind": "workflow", "name": crowd.name(stem), "access": access, **extra,
            "spec": {"engine": "airflow", "dag_id": own_dag(who, crowd.name(stem)),
                     "uses": uses}}


@pytest.mark.parametrize("asset_level", LEVELS)
@pytest.mark.parametrize("workflow_level", LEVELS)
def test_the_rule_on_every_pair_of_levels(crowd: World, used: dict[str, str],
                                          workflow_level: str, asset_level: str) -> None:
    stem = f"wf-{workflow_level}-{asset_level}"
    body = workflow(crowd, crowd.alice, stem, workflow_level, [used[asset_level]])
    answer = crowd.alice.post("/assets", json=body)
    check = crowd.alice.post("/workflows/check", json={"access": workflow_level,
                                                       "uses": [used[asset_level]]})
    if (workflow_level, asset_level) in FORBIDDEN:
        assert answer.status_code == 422, answer.text
        refusal = answer.json()
        assert (refusal["error"], refusal["asset"]) == ("visibility", used[asset_level])
        assert f"{workflow_level} workflow/{body['name']} may not use" in refusal["message"]
        assert crowd.alice.get(f"/assets/workflow/{body['name']}").status_code == 404
        assert check.status_code == 422
        assert check.json()["error"] == "visibility"
    else:
        assert answer.status_code == 201, answer.text
        assert answer.json()["spec"]["uses"] == [used[asset_level]]
        assert check.json() == {"ok": True}


def test_widening_a_workflow_is_checked_too(crowd: World, used: dict[str, str]) -> None:
    made = crowd.alice.post("/assets", json=workflow(crowd, crowd.alice, "wf-widen", "private",
                                                     [used["team"]]))
    assert made.status_code == 201
    wider = crowd.alice.patch(f"/assets/workflow/{crowd.name('wf-widen')}",
                              json={"access": "public"})
    assert (wider.status_code, wider.json()["error"]) == (422, "visibility")
    assert crowd.alice.get(f"/assets/workflow/{crowd.name('wf-widen')}").json()["access"] == \
        "private"


def test_a_team_workflow_may_not_use_another_teams_data(crowd: World) -> None:
    theirs = crowd.dave.post("/assets", json={"kind": "dataset", "access": "team",
                                              "team": crowd.team_b,
                                              "name": crowd.name("b-data")}).json()
    body = workflow(crowd, crowd.dave, "wf-cross", "team", [theirs["ref"]], team=crowd.team_a)
    answer = crowd.dave.post("/assets", json=body)
    assert (answer.status_code, answer.json()["error"]) == (422, "visibility")
    body["team"] = crowd.team_b
    assert crowd.dave.post("/assets", json=body).status_code == 201


def test_used_assets_must_exist_and_be_visible(crowd: World, used: dict[str, str]) -> None:
    ghost = f"dataset/{crowd.name('ghost')}"
    answer = crowd.alice.post("/assets", json=workflow(crowd, crowd.alice, "wf-ghost", "private",
                                                       [ghost]))
    assert answer.status_code == 422
    assert answer.json() | {"message": ""} == {"error": "unknown_asset", "asset": ghost,
                                               "message": ""}
    # carol cannot see alice's private dataset: the same answer as for one that is absent.
    hidden = crowd.carol.post("/workflows/check", json={"access": "private",
                                                        "uses": [used["private"]]})
    assert (hidden.status_code, hidden.json()["error"]) == (422, "unknown_asset")
    malformed = crowd.alice.post("/workflows/check", json={"access": "private", "uses": ["x"]})
    assert (malformed.status_code, malformed.json()["field"]) == (422, "uses.0")


def test_runnable_rechecks_with_todays_access_levels(crowd: World) -> None:
    data = crowd.alice.post("/assets", json={"kind": "dataset", "access": "public",
                                             "name": crowd.name("run-input")}).json()
    body = workflow(crowd, crowd.alice, "wf-run", "public", [data["ref"]])
    dag_id = body["spec"]["dag_id"]
    assert crowd.alice.post("/assets", json=body).status_code == 201
    found = crowd.service.get(f"/workflows/by-dag/{dag_id}")
    assert found.json()["ref"] == f"workflow/{body['name']}"
    assert crowd.service.post(f"/workflows/by-dag/{dag_id}/runnable").json()["ok"] is True
    # The input is narrowed after the workflow was registered: runs are refused from now on.
    assert crowd.alice.patch(f"/assets/{data['ref']}", json={"access": "team"}).status_code == 200
    refused = crowd.service.post(f"/workflows/by-dag/{dag_id}/runnable")
    assert (refused.status_code, refused.json()["error"], refused.json()["asset"]) == \
        (422, "visibility", data["ref"])
    # Deleted: unknown.
    assert crowd.alice.delete(f"/assets/{data['ref']}").status_code == 204
    gone = crowd.service.post(f"/workflows/by-dag/{dag_id}/runnable")
    assert (gone.status_code, gone.json()["error"]) == (422, "unknown_asset")
    unknown = crowd.service.post(f"/workflows/by-dag/{crowd.name('nodag')}/runnable")
    assert unknown.status_code == 404


def test_one_workflow_per_dag(crowd: World) -> None:
    body = workflow(crowd, crowd.alice, "wf-dag-once", "private", [])
    assert crowd.alice.post("/assets", json=body).status_code == 201
    body["name"] = crowd.name("wf-dag-twice")
    again = crowd.alice.post("/assets", json=body)
    assert (again.status_code, again.json()["error"]) == (409, "dag_registered")


def test_a_person_registers_only_dags_of_their_own(crowd: World) -> None:
    """A workflow decides who sees a DAG's runs and whether it runs: nobody takes over
    another person's pipeline, nor a DAG id of the platform's."""
    victims = workflow(crowd, crowd.alice, "wf-victims", "public", [])  # alice's namespace
    victims["name"] = crowd.name("wf-squat")
    for dag_id in (victims["spec"]["dag_id"], "bracelet_training", f"skiff_{crowd.suffix}"):
        victims["spec"]["dag_id"] = dag_id
        refused = crowd.bob.post("/assets", json=victims)
        assert (refused.status_code, refused.json()["error"]) == (403, "dag_not_yours"), refused.text
        assert refused.json()["field"] == "spec.dag_id"
        assert f"{identifier(crowd.bob.name)}__" in refused.json()["message"]
    assert crowd.bob.get(f"/assets/workflow/{victims['name']}").status_code == 404

    # Nor by moving a workflow of one's own onto someone else's DAG.
    own = workflow(crowd, crowd.bob, "wf-bobs", "private", [])
    assert crowd.bob.post("/assets", json=own).status_code == 201
    moved = crowd.bob.patch(f"/assets/workflow/{own['name']}",
                            json={"spec": {**own["spec"], "dag_id": own_dag(crowd.alice, "x")}})
    assert (moved.status_code, moved.json()["error"]) == (403, "dag_not_yours"), moved.text

    # The platform (its service account, an admin) registers its own DAG ids.
    platform = workflow(crowd, crowd.admin, "wf-platform", "public", [], team=crowd.team_a)
    platform["spec"]["dag_id"] = f"skiff_platform_{crowd.suffix}"
    assert crowd.admin.post("/assets", json=platform).status_code == 201


def test_look_alike_names_share_one_namespace_and_the_first_keeps_it(people: People,
                                                                     catalog_url: str) -> None:
    """jane-doe and jane.doe both name DAGs jane_doe__...: the second may not take the first's."""
    from skiff import keycloak

    twin = people.names["alice"].replace("-", ".")
    people.names["alice-twin"] = twin  # deleted with the module's people
    people.passwords["alice-twin"] = keycloak.create_user(people.ctx.settings, twin, "data-scientist",
                                                          people.team_a)
    alice = Api(catalog_url, people.token("alice"), people.names["alice"])
    look_alike = Api(catalog_url, people.token("alice-twin"), twin)
    assert identifier(alice.name) == identifier(twin)

    first = {"kind": "workflow", "name": f"look-alike-1-{people.suffix}", "access": "private",
             "spec": {"engine": "airflow", "dag_id": own_dag(alice, "first"), "uses": []}}
    assert alice.post("/assets", json=first).status_code == 201
    second = {**first, "name": f"look-alike-2-{people.suffix}",
              "spec": {**first["spec"], "dag_id": own_dag(look_alike, "second")}}
    refused = look_alike.post("/assets", json=second)
    assert (refused.status_code, refused.json()["error"]) == (403, "dag_not_yours"), refused.text
    assert alice.name in refused.json()["message"]
    # An edit that keeps the DAG is no new claim on it.
    assert alice.patch(f"/assets/workflow/{first['name']}", json={"description": "kept"}).status_code == 200
