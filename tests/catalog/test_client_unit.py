"""skiff.catalog without services: refs, where tokens come from, the events, the policies' wiring."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click
import pytest
from click.testing import CliRunner

from skiff import airflow_policy
from skiff.catalog import lineage, pipelines
from skiff.catalog.bracelet import asset_name
from skiff.catalog.cli import history
from skiff.catalog.client import CatalogError, Ref, discover_token_source, hub_token_source, parse_ref
from skiff.pipelines.governance import Declared, GovernanceError, split_uses
from tests.unit.test_jupyterhub_config import load, native_env

pytestmark = pytest.mark.unit


def test_refs_parse_and_name_what_is_wrong() -> None:
    assert parse_ref("model/bracelet@3") == Ref("model", "bracelet", "3")
    assert str(parse_ref("data_source/user-alice")) == "data_source/user-alice"
    for bad, says in (("bracelet", "KIND/NAME"), ("table/x", "unknown kind 'table'"),
                      ("dataset/-x", "no valid asset name"), ("dataset/x@", "nothing after '@'")):
        with pytest.raises(ValueError) as error:
            parse_ref(bad)
        assert says in str(error.value)


def test_token_sources_in_order() -> None:
    hub = {"JUPYTERHUB_API_URL": "http://hub/api", "JUPYTERHUB_API_TOKEN": "t", "JUPYTERHUB_USER": "al"}
    source, renewable = discover_token_source("explicit", environ={"SKIFF_TOKEN": "env", **hub})
    assert (source(), renewable) == ("explicit", False)
    source, renewable = discover_token_source(environ={"SKIFF_TOKEN": "env", **hub})
    assert (source(), renewable) == ("env", False)
    _, renewable = discover_token_source(environ=hub)
    assert renewable
    assert hub_token_source({"JUPYTERHUB_USER": "al"}) is None
    with pytest.raises(CatalogError) as none:
        discover_token_source(environ={})
    assert "SKIFF_TOKEN" in str(none.value)


def test_a_run_event_carries_the_catalogs_facets() -> None:
    run_id = lineage.run_id_for("bracelet_training", "manual__1", "train", 1)
    assert run_id == lineage.run_id_for("bracelet_training", "manual__1", "train", 1)
    event = lineage.build_event(
        "complete", run_id, "bracelet_training.train",
        {"dag_id": "bracelet_training", "user": "alice", "parameters": {"seed": 7}, "notebook": None},
        [lineage.asset("dataset", "bracelet-training", version="4", digest="sha256:ab")],
        [lineage.asset("model", "bracelet", version="12", format="onnx", size_bytes=963)])
    doc = json.loads(lineage.to_json(event))
    assert doc["eventType"] == "COMPLETE"
    assert doc["schemaURL"].endswith("#/$defs/RunEvent")
    assert doc["run"]["runId"] == run_id
    assert doc["job"] == {"namespace": "skiff", "name": "bracelet_training.train", "facets": {}}
    facet = doc["run"]["facets"]["skiff_run"]
    assert facet["parameters"] == {"seed": 7} and "notebook" not in facet
    assert facet["_producer"] == lineage.PRODUCER
    out = doc["outputs"][0]
    assert out["name"] == "model/bracelet"
    assert out["facets"]["skiff_asset"]["version"] == "12"
    assert out["facets"]["skiff_asset"]["size_bytes"] == 963
    assert doc["inputs"][0]["facets"]["skiff_asset"]["digest"] == "sha256:ab"


def test_emission_is_configured_from_airflows_environment_or_not_at_all() -> None:
    assert lineage.Emitter.from_env({}) is None
    with pytest.raises(lineage.LineageError) as missing:
        lineage.Emitter.from_env({"CATALOG_URL": "http://catalog:8400"})
    assert "AIRFLOW__KEYCLOAK_AUTH_MANAGER__" in str(missing.value)
    env = {"CATALOG_URL": "http://catalog:8400", "AIRFLOW__KEYCLOAK_AUTH_MANAGER__CLIENT_SECRET": "s",
           "AIRFLOW__KEYCLOAK_AUTH_MANAGER__SERVER_URL": "http://keycloak:8180/auth/"}
    emitter = lineage.Emitter.from_env(env)
    assert emitter is not None
    assert lineage.token_endpoint(env) == \
        "http://keycloak:8180/auth/realms/skiff/protocol/openid-connect/token"
    assert lineage.recorded_version({"recorded": ["dataset/a@2", "model/b@5"]}, "model/b") == "5"
    assert lineage.recorded_version(None, "model/b") is None


def test_names_made_from_locations_are_valid_asset_names() -> None:
    assert asset_name("s3://datasets/bracelet/extra rows.csv") == "datasets-bracelet-extra-rows.csv"
    assert pipelines.output_asset("alice__sales", "./out/result.csv") == "alice__sales.out-result.csv"
    for made in (asset_name("s3://b/" + "x" * 300), pipelines.output_asset("p", "y" * 300)):
        parse_ref(f"dataset/{made}")


def test_declared_pipeline_properties_are_checked() -> None:
    assert split_uses(["dataset/a, dataset/b", "dataset/a\nmodel/c", ["dataset/d"]]) == \
        ["dataset/a", "dataset/b", "model/c", "dataset/d"]
    with pytest.raises(GovernanceError) as bad_access:
        Declared(access="everyone")
    assert "everyone" in str(bad_access.value)
    with pytest.raises(GovernanceError) as bad_use:
        Declared(uses=["sales.csv"])
    assert "sales.csv" in str(bad_use.value)


def test_every_task_gets_the_run_start_check_once_and_keeps_its_own_hook() -> None:
    calls: list[str] = []
    plain = SimpleNamespace(_pre_execute_hook=None)
    airflow_policy.task_policy(plain)
    assert plain._pre_execute_hook is airflow_policy.catalog_check
    own = SimpleNamespace(_pre_execute_hook=lambda context: calls.append("own"))
    airflow_policy.task_policy(own)
    wrapped = own._pre_execute_hook
    airflow_policy.task_policy(own)
    assert own._pre_execute_hook is wrapped, "applied twice (processor and worker): one check"
    assert airflow_policy.check_runnable("any_dag", environ={}) == "no catalog configured (CATALOG_URL)"


def test_every_dag_the_platform_ships_is_registered_so_its_runs_may_start() -> None:
    """Runs of DAGs the catalog does not know are refused at start: the platform's are all known."""
    import re

    from skiff.catalog.workflows import PLATFORM_DAGS

    shipped = {}
    for path in (Path(__file__).resolve().parents[2] / "dags").glob("*.py"):
        shipped.update(dict.fromkeys(re.findall(r'dag_id="(\w+)"', path.read_text()), path.name))
    assert set(shipped) == set(PLATFORM_DAGS), shipped


def test_the_hub_lets_each_server_read_its_own_users_auth_state(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    config, _ = load(Path(__file__).resolve().parents[2], monkeypatch, native_env(tmp_path))
    scopes = config.Spawner.server_token_scopes
    assert "admin:auth_state!user" in scopes
    assert "read:users:name!user" in scopes
    assert not [s for s in scopes if s.startswith("admin:") and not s.endswith("!user")]
    roles: list[dict[str, Any]] = config.JupyterHub.load_roles
    user_role = next(r for r in roles if r["name"] == "user")
    assert set(user_role["scopes"]) == {"self", "admin:auth_state!user"}


def test_history_names_a_bad_reference() -> None:
    result = CliRunner().invoke(history, ["bracelet"])
    assert result.exit_code == 1
    assert "KIND/NAME" in result.output


def test_the_airflow_clients_secret_reaches_airflow_but_never_the_notebooks(ctx: Any) -> None:
    from skiff.services import airflow, workspace

    secret = ctx.settings.airflow_client_secret.get_secret_value()
    assert airflow.airflow_env(ctx)["AIRFLOW__KEYCLOAK_AUTH_MANAGER__CLIENT_SECRET"] == secret
    assert airflow.task_env(ctx)["CATALOG_URL"] == workspace.spawn_env(ctx)["CATALOG_URL"]
    assert secret not in workspace.spawn_env(ctx).values()
    assert secret not in airflow.task_env(ctx).values()


def test_reproduce_overrides_are_json_values_or_text() -> None:
    from skiff.catalog.cli import parse_overrides

    assert parse_overrides(("include_captured=false", "seed=7", "data_source=s3://d/x.csv",
                            'hyperparameters={"C": 2}')) == {
        "include_captured": False, "seed": 7, "data_source": "s3://d/x.csv",
        "hyperparameters": {"C": 2}}
    with pytest.raises(click.BadParameter, match="'seed' is not KEY=VALUE"):
        parse_overrides(("seed",))


def test_param_without_reproduce_is_refused() -> None:
    from skiff.catalog.cli import history

    result = CliRunner().invoke(history, ["model/bracelet@1", "--param", "seed=1"])
    assert result.exit_code != 0
    assert "--param replaces recorded parameters of --reproduce" in result.output
