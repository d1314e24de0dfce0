"""A run carries who started it: a person, the person who owns the DAG, or the scheduler."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from skiff import run_identity

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("triggered_by", "owners", "expected"), [
    ("dana", "airflow", "dana"),                       # a person triggered a platform DAG
    ("dana", ["erin"], "dana"),                        # ... or someone else's pipeline
    ("training-trigger", "airflow", "training-trigger"),  # a service triggered it with its account
    (None, ["erin"], "erin"),                          # erin's pipeline on its schedule
    (None, "airflow, erin", "erin"),
    (None, "airflow", run_identity.SCHEDULER),         # the platform's schedule
    (None, None, run_identity.SCHEDULER),
    ("", "", run_identity.SCHEDULER),
])
def test_who_started_a_run(triggered_by: str | None, owners: object, expected: str) -> None:
    dag_run = SimpleNamespace(triggering_user_name=triggered_by)
    assert run_identity.started_by(dag_run, owners) == expected  # type: ignore[arg-type]


def test_a_run_without_the_attribute_is_the_schedulers() -> None:
    assert run_identity.started_by(object()) == run_identity.SCHEDULER


def test_the_process_and_mlflow_take_the_name() -> None:
    environ = {"USER": "root", "LOGNAME": "root", "PATH": "/bin"}
    run_identity.adopt("dana", environ)
    assert environ == {"USER": "dana", "LOGNAME": "dana", "SKIFF_USER": "dana", "PATH": "/bin"}
