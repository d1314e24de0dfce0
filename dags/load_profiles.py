"""Load patient profiles into Apache Ignite for online features.

The model server completes a request that names a patient (``patient_id``) from
that patient's profile in the Ignite cache ``patient_profiles``
(skiff.bracelet.profiles, docs/decisions/0012-online-features.md). This DAG
(re)loads the profiles of the UCI patients, keyed by the data set's ``id``,
checked against the feature schema first: a row that fails is reported in the
task's result with its reasons, never stored half-valid. Loading is an upsert,
so running it again refreshes what is there.

On demand (REST API, UI). Environment (airflow_env natively, docker-compose.yml
in Compose): IGNITE_HOST, IGNITE_PORT, IGNITE_PASSWORD.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import Param, dag, get_current_context, task

SITES = ["cleveland", "hungary", "switzerland", "va"]


@dag(
    dag_id="load_profiles",
    description="Load patient profiles (UCI heart-disease records) into Ignite for online features",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": timedelta(seconds=30)},
    tags=["skiff", "bracelet", "serving"],
    params={"sites": Param(SITES, type="array", items={"enum": SITES},
                           description="which sites' patients to load")},
)
def load_profiles():
    @task(execution_timeout=timedelta(minutes=10))
    def load() -> dict[str, Any]:
        # Imported at run time, not at DAG parse time.
        from pyignite import Client

        from skiff.bracelet import profiles

        sites = get_current_context()["params"]["sites"]
        good, bad = profiles.checked(profiles.dataset_profiles(sites))
        password = os.environ.get("IGNITE_PASSWORD") or None
        client = Client(username="ignite" if password else None, password=password, use_ssl=False,
                        partition_aware=False, timeout=30)
        client.connect(os.environ.get("IGNITE_HOST", "127.0.0.1"),
                       int(os.environ.get("IGNITE_PORT", "10800")))
        try:
            stored = profiles.store(client.get_or_create_cache(profiles.CACHE), good)
        finally:
            client.close()
        return {"cache": profiles.CACHE, "sites": sites, "stored": stored, "rejected": len(bad),
                "rejects": bad}

    load()


load_profiles()
