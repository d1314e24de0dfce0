"""The native model-server service: its command, environment and readiness."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from serving.model_server.auth import AuthConfig
from serving.model_server.config import Config
from skiff.native.context import Context
from skiff.services import model_server

pytestmark = pytest.mark.unit


@pytest.fixture
def ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Context:
    root = Path(__file__).resolve().parents[2]
    for name, value in {"POSTGRES_PASSWORD": "x", "MLFLOW_DB_PASSWORD": "x", "AIRFLOW_DB_PASSWORD": "x",
                        "S3_ACCESS_KEY": "x", "S3_SECRET_KEY": "x", "KAFKA_CLUSTER_ID": "x",
                        "TRAINING_TRIGGER_PASSWORD": "x", "AIRFLOW_JWT_SECRET": "x",
                        "AIRFLOW_API_SECRET_KEY": "x", "AIRFLOW_FERNET_KEY": "x",
                        "BIND_HOST": "127.0.0.1", "MODEL_SERVER_PORT": "8123",
                        "MODEL_ALIAS": "staging"}.items():
        monkeypatch.setenv(name, value)
    return Context(root=root, cache=tmp_path / "cache", state=tmp_path / "state")


def test_gunicorn_serves_the_app_factory_from_the_serving_venv(ctx: Context) -> None:
    [program] = model_server.programs(ctx)
    cmd = program.command
    assert cmd[0] == str(ctx.venv("serving") / "bin" / "gunicorn")
    assert cmd[cmd.index("--bind") + 1].endswith(":8123")
    assert cmd[cmd.index("--worker-class") + 1] == "gthread"
    assert cmd[cmd.index("--workers") + 1] == "2"
    assert cmd[-1] == "serving.model_server.app:create_app()"


def test_the_environment_is_what_the_app_reads(ctx: Context) -> None:
    [program] = model_server.programs(ctx)
    config = Config.from_env(program.env)
    assert config.model_alias == "staging"
    assert config.tracking_uri.startswith("http://") and config.kafka_bootstrap.endswith(":9092")
    assert config.spool_dir == ctx.state / "data" / "model-server" / "spool"
    assert Path(program.env["PROMETHEUS_MULTIPROC_DIR"]).is_relative_to(ctx.state)


def test_tokens_are_checked_against_the_public_issuer_and_internal_keys(ctx: Context) -> None:
    [program] = model_server.programs(ctx)
    auth = AuthConfig.from_env(program.env)
    # The issuer is the public URL (what Keycloak writes in tokens), the keys come
    # from the internal address: mixing them up is the classic single sign-on failure.
    assert auth.issuer == ctx.settings.keycloak_issuer
    assert auth.issuer.startswith("https://")
    assert auth.jwks_url == (f"{ctx.settings.keycloak_internal_url}/realms/"
                             f"{ctx.settings.keycloak_realm}/protocol/openid-connect/certs")
    assert auth.audience == "model-api"


def test_the_stack_waits_for_the_process_not_for_a_model(ctx: Context,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    svc = model_server.SERVICE
    # Not Kafka: the server keeps answering (and spooling) while Kafka is away. Keycloak:
    # no request but health is answered without checking its token against the realm's keys.
    assert svc.name == "model-server" and set(svc.depends_on) == {"mlflow", "keycloak"}
    asked: list[str] = []

    def get(url: str, **kwargs: object) -> httpx.Response:
        asked.append(url)
        return httpx.Response(200)

    monkeypatch.setattr(httpx, "get", get)
    svc.ready(ctx)
    assert asked == ["http://127.0.0.1:8123/healthz"]
