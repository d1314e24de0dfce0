"""The Ignite service without Ignite: one configuration for both modes, and what fills it."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from skiff.native.context import Context
from skiff.services import ignite

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


def test_every_placeholder_is_set_natively_and_in_compose(root: Path, ctx: Context,
                                                          compose_doc: dict[str, Any]) -> None:
    used = {name for value in properties(root).values() for name in PLACEHOLDER.findall(value)}
    assert used == {"IGNITE_WORK_DIR", "IGNITE_CLIENT_HOST", "IGNITE_CLIENT_PORT"}
    [program] = ignite.programs(ctx)
    assert used <= set(program.env)
    assert used <= set(compose_doc["services"]["ignite"]["environment"])


def test_the_native_node_reads_the_shared_file_and_keeps_its_data_in_the_state(ctx: Context) -> None:
    [program] = ignite.programs(ctx)
    s = ctx.settings
    assert program.command[-2:] == [ignite.MAIN_CLASS, str(ignite.config_file(ctx))]
    assert Path(program.env["IGNITE_WORK_DIR"]).is_relative_to(ctx.state)
    assert (program.env["IGNITE_CLIENT_HOST"], program.env["IGNITE_CLIENT_PORT"]) == (
        s.bind_host, str(s.ignite_port))
    assert any(opt.startswith("--add-opens=java.base/java.nio") for opt in program.command)
    assert s.ignite_port in ignite.ports(ctx)


def test_compose_runs_the_versioned_image_and_bootstraps_it(compose_doc: dict[str, Any]) -> None:
    services = compose_doc["services"]
    assert services["ignite"]["image"] == "apacheignite/ignite:${IGNITE_VERSION}"
    mounts = services["ignite"]["volumes"]
    assert any(m.startswith("./compose/ignite/ignite-config.xml:") for m in mounts)
    assert services["ignite-init"]["command"] == ["bootstrap", "ignite"]
    for client in ("model-server", "airflow-scheduler", "airflow-worker"):
        env = services[client].get("environment", {})
        assert env.get("IGNITE_PASSWORD") == "${IGNITE_PASSWORD}", client
