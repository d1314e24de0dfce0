"""User code sees where the platform's services are, never the worker's own secrets."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from skiff import user_env
from skiff.native.context import Context
from skiff.pipelines.runner import S3_KEYS, node_env
from skiff.pipelines.spec import NodeSpec
from skiff.services import airflow

pytestmark = pytest.mark.unit


def test_a_node_sees_none_of_its_workers_secrets(compose_ctx: Context) -> None:
    worker = {**airflow.airflow_env(compose_ctx), **airflow.task_env(compose_ctx),
              "PATH": "/usr/bin", "AIRFLOW_CTX_DAG_ID": "p__bracelet", "SOME_LATER_SECRET": "x"}
    node = NodeSpec(name="train", label="train", kind="notebook", filename="train.ipynb",
                    bucket="pipelines", prefix="erin/bracelet", archive="train.tar.gz", owner="erin",
                    pipeline="erin__bracelet", env={"run_name": "r"})
    own = {"S3_ACCESS_KEY": "skiff-erin", "S3_SECRET_KEY": "erins-own-secret"}
    env = node_env(node, {}, "run-1", base=worker, s3_keys=own)
    # The platform's secrets as they are (generated, long): in a URL, a header or alone.
    s = compose_ctx.settings
    secrets = {name: getattr(s, name).get_secret_value() for name in s.model_fields
               if isinstance(getattr(s, name), SecretStr)}
    held = {name for name, secret in secrets.items() if any(secret in v for v in worker.values())}
    assert {"airflow_fernet_key", "airflow_jwt_secret", "ignite_password", "s3_secret_key"} <= held
    plain = [v for k, v in env.items() if k not in user_env.CREDENTIALS]
    leaked = {name for name, secret in secrets.items() if any(secret in v for v in plain)}
    assert leaked == set()
    assert "SOME_LATER_SECRET" not in env
    assert env["MLFLOW_TRACKING_URI"] == worker["MLFLOW_TRACKING_URI"]
    assert (env["PATH"], env["AIRFLOW_CTX_DAG_ID"], env["run_name"]) == ("/usr/bin", "p__bracelet", "r")
    assert (env["USER"], env["LOGNAME"]) == ("erin", "erin")
    # The owner's own S3 keys, in place of the platform's.
    assert {k: env[k] for k in own} == own


def test_what_the_platform_gives_user_code_is_all_named(compose_ctx: Context) -> None:
    """A variable added to the task environment and not to skiff.user_env would not reach a node.

    The exceptions: the platform's S3 keys (a node gets its owner's own instead) and its
    Cassandra reader's login (a node gets none)."""
    assert set(airflow.task_env(compose_ctx)) - user_env.NAMES == {
        *S3_KEYS, "CASSANDRA_USERNAME", "CASSANDRA_PASSWORD"}


def test_the_allow_list_names_no_secret_of_the_platform() -> None:
    from skiff.settings import Settings

    secret_fields: set[str] = {name.upper() for name, field in Settings.model_fields.items()
                                     if "Secret" in str(field.annotation)}
    # Only the credentials named as such (Spark's, until each person has their own).
    assert secret_fields & user_env.NAMES <= user_env.CREDENTIALS
