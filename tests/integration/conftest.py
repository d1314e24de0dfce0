"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.remote.webdriver import WebDriver

from skiff.bracelet import demo
from skiff.native.context import Context
from tests.integration.browser import chromium


@pytest.fixture(scope="module")
def champion(stack: Context) -> dict[str, Any]:
    """The served champion of the bracelet model, trained through Airflow if there is none yet."""
    found = demo.champion(stack)
    if found is None:
        api = demo.airflow_client(stack)
        run_id = demo.trigger(api, demo.TRAINING_DAG, {})
        assert demo.wait_run(api, demo.TRAINING_DAG, run_id) == "success"
        found = demo.champion(stack)
    assert found is not None
    demo.wait_served(stack, found["version"])
    return found


@pytest.fixture(scope="module")
def shots(stack: Context) -> Path:
    """Where browser tests keep their screenshots (test-artifacts/screenshots/)."""
    folder = stack.root / "test-artifacts" / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    with chromium() as driver:
        yield driver
