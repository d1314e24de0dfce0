"""The native launcher's pure parts: start order, supervisord config, port checks."""

from __future__ import annotations

import configparser
import os
import socket
from pathlib import Path

import pytest

from skiff.native.context import Context
from skiff.native.launcher import port_owner
from skiff.native.spec import Program
from skiff.native.supervisor import render_config
from skiff.services import REGISTRY, in_start_order

pytestmark = pytest.mark.unit


@pytest.fixture()
def ctx(tmp_path: Path, root: Path) -> Context:
    return Context(root=root, cache=tmp_path / "cache", state=tmp_path / "state")


def test_dependencies_start_before_their_dependents() -> None:
    order = [s.name for s in in_start_order()]
    for svc in REGISTRY.values():
        for dep in svc.depends_on:
            assert order.index(dep) < order.index(svc.name)


def test_starting_one_service_brings_what_it_needs() -> None:
    assert [s.name for s in in_start_order(["mlflow"])] == ["postgres", "s3", "mlflow"]


def test_unknown_service_is_named_in_the_error() -> None:
    with pytest.raises(KeyError, match=r"'kafak'.*known: postgres"):
        in_start_order(["kafak"])


def test_supervisord_config_keeps_commands_and_secrets_intact(ctx: Context) -> None:
    prog = Program(name="demo", command=["/bin/echo", "50% done", "it's"],
                   env={"SECRET": 'a%b"c'}, user="nobody")
    parser = configparser.RawConfigParser()
    parser.read_string(render_config(ctx, [prog]))
    section = parser["program:demo"]
    # supervisord expands %% back to %: what reaches the process is the original.
    assert section["command"] == "/bin/echo '50%% done' 'it'\"'\"'s'"
    assert section["environment"] == 'SECRET="a%%b\\"c"'
    assert section["stopasgroup"] == section["killasgroup"] == "true"
    assert section["autostart"] == "false"
    assert section["user"] == "nobody"


def test_a_port_in_use_is_reported_with_its_owner() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        owner = port_owner("127.0.0.1", port)
    assert owner is not None and f"pid {os.getpid()}" in owner
    assert port_owner("127.0.0.1", port) is None

