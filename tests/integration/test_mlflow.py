"""MLflow: a run logged through the tracking server lands in PostgreSQL and S3."""

from __future__ import annotations

import json
import subprocess
import uuid

import pytest

from skiff.native.context import Context
from skiff.services import mlflow, s3

pytestmark = pytest.mark.integration

# The MLflow client lives in the mlflow venv, not in the CLI's: run it there.
LOG_RUN = """
import json, sys, mlflow
mlflow.set_tracking_uri(sys.argv[1])
mlflow.set_experiment("skiff-tests")
with mlflow.start_run() as run:
    mlflow.log_param("alpha", 0.5)
    mlflow.log_metric("rmse", 0.25)
    mlflow.log_text(sys.argv[2], "notes/marker.txt")
print(json.dumps({"run_id": run.info.run_id, "artifact_uri": run.info.artifact_uri,
                  "experiment_id": run.info.experiment_id}))
"""


def test_run_logged_through_server_lands_in_postgres_and_the_bucket(stack: Context) -> None:
    marker = f"skiff-{uuid.uuid4()}"
    python = stack.venv("mlflow") / "bin" / "python"
    done = subprocess.run([str(python), "-c", LOG_RUN, mlflow.tracking_uri(stack), marker],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    run = json.loads(done.stdout.strip().splitlines()[-1])
    # Proxied artifacts: the client only ever saw the server, never S3.
    assert run["artifact_uri"].startswith("mlflow-artifacts:")

    client = s3.root_client(stack)
    keys = [o.object_name for o in client.list_objects(mlflow.ARTIFACT_BUCKET, recursive=True)
            if o.object_name.endswith(f"{run['run_id']}/artifacts/notes/marker.txt")]
    assert len(keys) == 1, f"artifact of run {run['run_id']} not in bucket"
    obj = client.get_object(mlflow.ARTIFACT_BUCKET, keys[0])
    try:
        assert obj.read().decode() == marker
    finally:
        obj.close()
        obj.release_conn()


    import psycopg

    s = stack.settings
    with psycopg.connect(host=s.host("postgres"), port=s.postgres_port, user="mlflow",
                         password=s.mlflow_db_password.get_secret_value(), dbname="mlflow",
                         connect_timeout=3) as conn:
        params = conn.execute("SELECT key, value FROM params WHERE run_uuid = %s",
                              (run["run_id"],)).fetchall()
    assert params == [("alpha", "0.5")]
