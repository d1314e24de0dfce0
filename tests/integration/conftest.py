"""Fixtures shared by the integration tests."""

from __future__ import annotations

from typing import Any

import pytest

from skiff.bracelet import demo
from skiff.native.context import Context


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
