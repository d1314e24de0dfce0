"""Who and what an event belongs to: the run, step, user and workflow.

Resolved per call, most specific first: the keyword arguments of the emitting call,
then :func:`set_context`, then SKIFF_RUN_ID / SKIFF_STEP / SKIFF_USER / SKIFF_WORKFLOW
(an explicit override for any process), then the Airflow task's AIRFLOW_CTX_* variables
(workflow = the DAG id, so the run's visibility follows the DAG's catalog asset), then
JUPYTERHUB_USER in a notebook server. Outside all of these the run is
``local/<user>/<uuid>``, one per process, so a script's events group together.
"""

from __future__ import annotations

import getpass
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace

FIELDS = ("run", "step", "user", "workflow")


@dataclass(frozen=True)
class RunContext:
    run: str
    step: str
    user: str
    workflow: str


# One generated run id per process: every event a kernel or script sends without a
# run of its own lands in the same run.
_PROCESS_RUN = uuid.uuid4().hex
_overrides: dict[str, str] = {}


def set_context(**values: str | None) -> None:
    """Process-wide defaults (run, step, user, workflow) for the following events.

    ``set_context(run=None)`` removes an override; ``set_context(run="new")`` in a
    notebook starts a new run without restarting the kernel.
    """
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise TypeError(f"set_context() got unknown field(s) {', '.join(unknown)}; "
                        f"known: {', '.join(FIELDS)}")
    for key, value in values.items():
        if value is None:
            _overrides.pop(key, None)
        else:
            _overrides[key] = str(value)


def new_run() -> str:
    """Start a new generated run for this process (a notebook's "run again") and return it."""
    global _PROCESS_RUN
    _PROCESS_RUN = uuid.uuid4().hex
    _overrides.pop("run", None)
    return resolve(os.environ).run


def notebook_run(user: str, run_id: str) -> str:
    return f"notebook/{user}/{run_id}"


def local_run(user: str, run_id: str) -> str:
    return f"local/{user}/{run_id}"


def own_run_folders(user: str) -> tuple[str, ...]:
    """The runs that are ``user``'s by their name: their notebooks' and scripts'.

    A run's files are stored under its name in the events bucket, so these (and the
    runs of their own DAGs) are where that person's S3 keys may write there
    (serving.catalog.stores).
    """
    return (notebook_run(user, ""), local_run(user, ""))


def _local_user(env: Mapping[str, str]) -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return env.get("USER", "unknown")


def from_environment(env: Mapping[str, str]) -> RunContext:
    dag = env.get("AIRFLOW_CTX_DAG_ID", "")
    dag_run = env.get("AIRFLOW_CTX_DAG_RUN_ID", "")
    hub_user = env.get("JUPYTERHUB_USER", "")
    if dag and dag_run:
        # Airflow has no "who triggered" in the task's environment: the run-start hook
        # (skiff.airflow_policy) puts it in SKIFF_USER, read below; without the hook the
        # DAG's owner stands in. The run's readers come from the workflow's catalog asset.
        ctx = RunContext(run=f"{dag}/{dag_run}", step=env.get("AIRFLOW_CTX_TASK_ID", ""),
                         user=env.get("AIRFLOW_CTX_DAG_OWNER", "") or "airflow", workflow=dag)
    elif hub_user:
        ctx = RunContext(run=notebook_run(hub_user, _PROCESS_RUN), step="", user=hub_user,
                         workflow="")
    else:
        user = _local_user(env)
        ctx = RunContext(run=local_run(user, _PROCESS_RUN), step="", user=user, workflow="")
    explicit = {field: env[f"SKIFF_{'RUN_ID' if field == 'run' else field.upper()}"]
                for field in FIELDS
                if env.get(f"SKIFF_{'RUN_ID' if field == 'run' else field.upper()}")}
    return replace(ctx, **explicit)


def resolve(env: Mapping[str, str], **given: str | None) -> RunContext:
    """The context of one event: ``given`` (non-None) over set_context() over ``env``."""
    ctx = replace(from_environment(env), **_overrides)
    chosen = {key: str(value) for key, value in given.items() if value is not None}
    ctx = replace(ctx, **chosen)
    if not ctx.run:
        raise ValueError("an event needs a run: pass run=..., or set SKIFF_RUN_ID")
    if not ctx.user:
        raise ValueError("an event needs a user: pass user=..., or set SKIFF_USER")
    return ctx
