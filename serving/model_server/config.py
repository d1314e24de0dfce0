"""The server's configuration, from environment variables.

The names are those of ``.env`` where one exists (``MODEL_NAME``...), so Compose
can hand the service the project's env file as it is.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Config:
    # MLflow serves everything under --static-prefix /mlflow (src/skiff/services/mlflow.py).
    tracking_uri: str = "http://127.0.0.1:5000/mlflow"
    model_name: str = "bracelet"
    model_alias: str = "champion"
    refresh_seconds: float = 5.0
    kafka_bootstrap: str = "127.0.0.1:9092"
    spool_dir: Path = Path("spool")
    # Patient profiles (online features): Ignite's thin-client address and password.
    ignite_host: str = "127.0.0.1"
    ignite_port: int = 10800
    ignite_password: str | None = field(default=None, repr=False)
    # Per lookup: a request waits at most this long on Ignite before its 503.
    ignite_timeout: float = 2.0
    # Off in unit tests of the app: no threads, nothing talks to MLflow or Kafka.
    background: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        env = os.environ if env is None else env
        return cls(
            tracking_uri=env.get("MLFLOW_TRACKING_URI", cls.tracking_uri),
            model_name=env.get("MODEL_NAME", cls.model_name),
            model_alias=env.get("MODEL_ALIAS", cls.model_alias),
            refresh_seconds=float(env.get("MODEL_REFRESH_SECONDS", cls.refresh_seconds)),
            kafka_bootstrap=env.get("KAFKA_BOOTSTRAP_SERVERS", cls.kafka_bootstrap),
            spool_dir=Path(env.get("CAPTURE_SPOOL_DIR", str(cls.spool_dir))),
            ignite_host=env.get("IGNITE_HOST", cls.ignite_host),
            ignite_port=int(env.get("IGNITE_PORT", cls.ignite_port)),
            ignite_password=env.get("IGNITE_PASSWORD") or None,
            ignite_timeout=float(env.get("IGNITE_TIMEOUT_SECONDS", cls.ignite_timeout)),
        )
