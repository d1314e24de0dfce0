"""Each device's own client: a copy of the realm file's devices client, under a checked name."""

from __future__ import annotations

from pathlib import Path

import pytest

from skiff import devices
from skiff.native.context import Context

pytestmark = pytest.mark.unit


def test_a_device_client_is_the_fleets_client_with_its_own_name_and_no_shared_secret(root: Path) -> None:
    rep = devices.representation(Context.discover(root), "bracelet-0042")
    assert rep["clientId"] == "device-bracelet-0042"
    assert "secret" not in rep, "Keycloak generates each device's secret"
    assert rep["serviceAccountsEnabled"] and not rep["standardFlowEnabled"]
    assert not rep["directAccessGrantsEnabled"] and not rep["publicClient"]
    audiences = [m["config"]["included.client.audience"] for m in rep["protocolMappers"]
                 if m["protocolMapper"] == "oidc-audience-mapper"]
    assert audiences == ["model-api"]
    assert rep["attributes"][devices.ATTRIBUTE] == "true"


@pytest.mark.parametrize("name", ["", "Bracelet", "a b", "-x", "x" * 64, "../admin"])
def test_a_bad_device_name_is_refused_and_explained(name: str) -> None:
    with pytest.raises(devices.DeviceError, match="lower-case letters"):
        devices.client_id(name)


def test_a_token_lives_as_long_as_the_realm_says(root: Path) -> None:
    assert devices.token_lifespan(Context.discover(root)) == 300
