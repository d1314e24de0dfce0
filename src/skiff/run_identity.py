"""Who a workflow run belongs to: the person who started it, else the service that did.

One answer for every place a run leaves its name: the console's events (``user``),
MLflow (``mlflow.user``, which MLflow takes from ``LOGNAME``/``USER``), lineage.

- A person who triggers a run (Airflow's UI or API, the ``skiff`` CLI) is its
  ``triggering_user_name``; so is a service that triggers one through the API with
  its own account (the training trigger, for Kafka's training requests).
- A scheduled run of a DAG a person owns (an Elyra pipeline: its owner is who
  submitted it) is that person's.
- Any other run (the platform's schedules) is the scheduler's: :data:`SCHEDULER`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, MutableMapping
from typing import Any

SCHEDULER = "airflow-scheduler"
# Airflow's default owner when a DAG names none: no person.
_NOBODY = {"", "airflow"}
# The variables a run's processes read the name from (MLflow: getpass.getuser()).
ENV_NAMES = ("SKIFF_USER", "LOGNAME", "USER")


def started_by(dag_run: Any, owners: Iterable[str] | str | None = None) -> str:
    person = getattr(dag_run, "triggering_user_name", None)
    if person:
        return str(person)
    if isinstance(owners, str):
        owners = [o.strip() for o in owners.split(",")]
    people = [o for o in (owners or ()) if o not in _NOBODY]
    return people[0] if people else SCHEDULER


def adopt(who: str, environ: MutableMapping[str, str] = os.environ) -> None:
    """Make ``who`` the name this process and its children (papermill's kernel, a node) report."""
    for name in ENV_NAMES:
        environ[name] = who
