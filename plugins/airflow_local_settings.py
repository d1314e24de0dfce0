"""Airflow's local settings: Skiff's cluster policies (skiff.airflow_policy).

``task_instance_mutation_hook`` sends GPU-requesting runs' tasks to the gpu queue;
``task_policy`` makes every task check the catalog's visibility rule before it runs.

Airflow imports ``airflow_local_settings`` from sys.path, which holds the plugins
folder (this folder natively and in Compose). Registering the policy here rather
than through the ``airflow.policy`` entry point is deliberate: Airflow 3.3 only
calls ``task_instance_mutation_hook`` while creating a run's task instances when
it was found in this module (elsewhere it keeps the hook marked as a no-op).
"""

from __future__ import annotations

from skiff.airflow_policy import task_instance_mutation_hook, task_policy

__all__ = ["task_instance_mutation_hook", "task_policy"]
