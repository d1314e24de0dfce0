"""The Ignite service without Ignite: one configuration for both modes, and what fills it."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from skiff.native.context import Context
from skiff.services import airflow, ignite, model_server
from tests.unit.test_compose_file import assert_listens

pytestmark = pytest.mark.unit

PLACEHOLDER = re.compile(r"\$\{([A-Z_]+):[^}]*\}")
BEANS = "{http://www.springframework.org/schema/beans}"


@pytest.fixture
def ctx(root: Path, tmp_path: Path) -> Context:
    return Context(root=root, cache=tmp_path / "cache", state=tmp_path / "state")


def config_text(root: Path) -> str:
    return (root / "compose" / "ignite" / "ignite-config.xml").read_text()


def properties(root: Path) -> dict[str, str]:
    tree = ET.fromstring(config_text(root))
    return {p.get("name", ""): p.get("value", "") for p in tree.iter(f"{BEANS}property") if p.get("value")}


def test_sign_in_and_the_persistence_it_needs_are_on(root: Path) -> None:
    props = properties(root)
    assert props["authenticationEnabled"] == "true"
    assert props["persistenceEnabled"] == "true"
    # Only the thin-client protocol listens for clients.
    assert (props["jdbcEnabled"], props["odbcEnabled"], props["thinClientEnabled"]) == (
        "false", "false", "true")


def test_every_placeholder_is_set_by_the_program(root: Path, ctx: Context, compose_ctx: Context) -> None:
    used = {name for value in properties(root).values() for name in PLACEHOLDER.findall(value)}
    assert used == {"IGNITE_WORK_DIR", "IGNITE_CLIENT_HOST", "IGNITE_CLIENT_PORT"}
    [program] = ignite.programs(ctx)
    assert used <= set(program.env)
    # The same program in its container: thin clients from other containers get in.
    [program] = ignite.programs(compose_ctx)
    assert program.env["IGNITE_CLIENT_HOST"] == "0.0.0.0"


def test_the_native_node_reads_the_shared_file_and_keeps_its_data_in_the_state(ctx: Context) -> None:
    [program] = ignite.programs(ctx)
    s = ctx.settings
    assert program.command[-2:] == [ignite.MAIN_CLASS, str(ignite.config_file(ctx))]
    assert Path(program.env["IGNITE_WORK_DIR"]).is_relative_to(ctx.state)
    assert (program.env["IGNITE_CLIENT_HOST"], program.env["IGNITE_CLIENT_PORT"]) == (
        s.bind_host, str(s.ignite_port))
    assert any(opt.startswith("--add-opens=java.base/java.nio") for opt in program.command)
    assert s.ignite_port in ignite.ports(ctx)


def test_compose_sets_the_password_before_the_model_server_signs_in(
        compose_doc: dict[str, Any], compose_ctx: Context) -> None:
    services = compose_doc["services"]
    assert services["ignite-init"]["command"] == ["skiff", "bootstrap", "ignite"]
    assert services["ignite-init"]["depends_on"]["ignite"]["condition"] == "service_healthy"
    # The model server reads profiles with IGNITE_PASSWORD, which the bootstrap sets.
    assert services["model-server"]["depends_on"]["ignite-init"]["condition"] == \
        "service_completed_successfully"
    # Its clients in other containers find the node by its service name.
    [server] = model_server.programs(compose_ctx)
    airflow_env = airflow.airflow_env(compose_ctx)
    password = compose_ctx.settings.ignite_password.get_secret_value()
    for env in (server.env, airflow_env):
        assert (env["IGNITE_HOST"], env["IGNITE_PASSWORD"]) == ("ignite", password)
        assert_listens(compose_ctx, compose_doc, env["IGNITE_HOST"], int(env["IGNITE_PORT"]), "ignite")
