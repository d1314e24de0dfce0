"""Typed settings, read once from the environment and the project's ``.env``.

The same variable names configure docker-compose.yml, so ``.env.example`` documents
both. Defaults are the native mode's: every service on loopback.
"""

from __future__ import annotations

import socket
from pathlib import Path

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict


def find_root(start: Path | None = None) -> Path:
    """The project root: the nearest folder holding ``versions.env``."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "versions.env").is_file():
            return candidate
    # Installed elsewhere (e.g. in an image): fall back to the package's checkout.
    packaged = Path(__file__).resolve().parents[2]
    if (packaged / "versions.env").is_file():
        return packaged
    raise FileNotFoundError(
        f"no versions.env in {here} or its parents: run skiff from a Skiff checkout"
    )


class Versions(BaseSettings):
    """Component versions from ``versions.env`` (the one versions file)."""

    model_config = SettingsConfigDict(extra="ignore", env_ignore_empty=True)

    postgres_version: str
    versitygw_version: str
    kafka_version: str
    scala_binary_version: str
    cassandra_version: str
    mlflow_version: str
    airflow_version: str
    python_version: str
    traefik_version: str
    keycloak_version: str
    jupyterhub_version: str
    jupyterlab_version: str
    elyra_version: str
    configurable_http_proxy_version: str
    spark_version: str
    ignite_version: str
    redis_version: str
    go_version: str
    node_version: str
    npm_version: str

    @classmethod
    def load(cls, root: Path) -> Versions:
        # The file wins over stray environment variables: it is the one source.
        return cls(_env_file=root / "versions.env")  # type: ignore[call-arg]


class Settings(BaseSettings):
    """Secrets and ports. Secrets have no default: ``skiff init`` generates them."""

    model_config = SettingsConfigDict(extra="ignore", env_ignore_empty=True)

    bind_host: str = "127.0.0.1"
    # Where clients find each service. Natively every service is on bind_host;
    # Compose's init jobs set these to the service names on the compose network.
    postgres_host: str | None = None
    s3_host: str | None = None
    kafka_host: str | None = None
    cassandra_host: str | None = None
    mlflow_host: str | None = None
    airflow_host: str | None = None
    model_server_host: str | None = None
    keycloak_host: str | None = None
    portal_host: str | None = None
    jupyterhub_host: str | None = None
    # The hub itself when it is not where its proxy is (Compose: containers of their own).
    jupyterhub_hub_host: str | None = None
    spark_host: str | None = None
    # Spark Connect's host when it is not the master's (Compose runs each in a container).
    spark_connect_host: str | None = None
    ignite_host: str | None = None
    redis_host: str | None = None
    catalog_host: str | None = None
    notifications_host: str | None = None
    prometheus_host: str | None = None
    ingest_host: str | None = None

    # The one public address (Traefik, TLS): https://PUBLIC_HOST:HTTPS_PORT/.
    public_host: str = "localhost"
    https_port: int = 8443
    # Plain HTTP on this port only redirects to HTTPS.
    http_port: int = 8088
    # The certificate Traefik serves. Empty: the one `skiff init` generates in certs/.
    tls_cert_file: str = ""
    tls_key_file: str = ""

    postgres_port: int = 5432
    postgres_password: SecretStr
    mlflow_db_password: SecretStr
    airflow_db_password: SecretStr

    s3_port: int = 7070
    s3_access_key: str
    s3_secret_key: SecretStr
    s3_region: str = "us-east-1"
    s3_buckets: str = Field(default="mlflow,datasets,notebooks,models,pipelines,events")

    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    # A listener for clients on the Docker host of a Compose stack (0: none).
    kafka_external_port: int = 0
    kafka_cluster_id: str
    kafka_topics: str = Field(
        default="prediction-requests,prediction-requests-dlq,training-requests,platform-events")

    cassandra_port: int = 9042
    # Cassandra checks passwords and grants (skiff.cassandra_access): the bootstrap's
    # superuser, the ingest (writes captured requests), the readers (training, monitoring).
    cassandra_admin_password: SecretStr
    cassandra_ingest_password: SecretStr
    cassandra_reader_password: SecretStr

    mlflow_port: int = 5000

    # The bracelet scenario: registered model, its serving alias, the REST API.
    model_name: str = "bracelet"
    model_alias: str = "champion"
    model_server_port: int = 8000
    # Seconds between the model server's checks of the alias (hot swap).
    model_refresh_seconds: float = 5.0

    airflow_port: int = 8080
    airflow_jwt_secret: SecretStr
    airflow_api_secret_key: SecretStr
    airflow_fernet_key: SecretStr
    airflow_parallelism: int = 2

    # Keycloak: single sign-on for every UI and API (realm in compose/keycloak/).
    keycloak_port: int = 8180
    keycloak_management_port: int = 9180
    keycloak_realm: str = "skiff"
    # The master realm's bootstrap administrator (Keycloak's own console and admin API).
    keycloak_admin_user: str = "admin"
    keycloak_admin_password: SecretStr
    keycloak_db_password: SecretStr
    # The platform's first user in the skiff realm (role admin), created at bootstrap.
    platform_admin_user: str = "admin"
    platform_admin_password: SecretStr
    # Secrets of the realm's confidential clients.
    portal_client_secret: SecretStr
    jupyterhub_client_secret: SecretStr
    airflow_client_secret: SecretStr
    mlflow_client_secret: SecretStr
    device_client_id: str = "bracelet-devices"
    device_client_secret: SecretStr
    # The training trigger's own realm user (role citizen: trigger runs, nothing more),
    # created by the airflow service's bootstrap.
    training_trigger_user: str = "training-trigger"
    training_trigger_password: SecretStr

    # The portal: landing page and Traefik's forward-auth (MLflow, dashboard).
    portal_port: int = 8090
    portal_cookie_secret: SecretStr

    # JupyterHub: its proxy's public and API ports, and the hub's own port.
    jupyterhub_port: int = 8100
    jupyterhub_proxy_api_port: int = 8101
    jupyterhub_hub_port: int = 8081
    jupyterhub_crypt_key: SecretStr
    configproxy_auth_token: SecretStr

    # Spark standalone: the master's RPC and web UI ports, each worker's web UI, and
    # what one worker offers to executors.
    spark_master_port: int = 7077
    spark_master_web_port: int = 8380
    spark_worker_web_port: int = 8381
    spark_worker_cores: int = 2
    spark_worker_memory: str = "2g"
    # Spark Connect: where clients (`skiff score`, Airflow tasks, notebooks) send their
    # DataFrame plans (docs/decisions/0010-spark.md), and its driver's memory.
    spark_connect_port: int = 15002
    spark_connect_memory: str = "1g"
    # The bearer token Spark Connect requires of every client (a shared secret, like
    # REDIS_PASSWORD); unset: Spark Connect takes anyone who reaches its port.
    spark_connect_token: SecretStr | None = None

    # Apache Ignite: the in-memory store of device/patient profiles (thin-client port).
    ignite_port: int = 10800
    # The thin clients' password (Ignite's superuser "ignite"): `skiff bootstrap ignite` sets it.
    ignite_password: SecretStr

    # Redis: the broker of Airflow's Celery workers.
    redis_port: int = 6379
    redis_password: SecretStr

    # The catalog (serving/catalog): projects, assets, access levels, data sources, lineage.
    catalog_port: int = 8400
    catalog_db_password: SecretStr
    # Fernet key encrypting data sources' secrets at rest in the catalog's database.
    catalog_secret_key: SecretStr

    # Notifications (serving/notifications): platform events from Kafka (topic
    # events_topic) stored in PostgreSQL's ``notifications`` database and pushed to
    # browsers; payloads larger than events_inline_bytes go to bucket events_bucket.
    notifications_port: int = 8410
    notifications_db_password: SecretStr
    events_topic: str = "platform-events"
    events_bucket: str = "events"
    events_inline_bytes: int = 65536

    # Prometheus: scrapes the model server, the ingest's consumer lag, the notifications.
    prometheus_port: int = 9090
    # Where the ingest service publishes its Prometheus metrics (consumer lag).
    ingest_metrics_port: int = 8420

    @classmethod
    def load(cls, root: Path) -> Settings:
        # In a container the variables come from Compose's env_file, not a file here.
        env_file = root / ".env"
        try:
            return cls(_env_file=env_file if env_file.is_file() else None)  # type: ignore[call-arg]
        except ValidationError as exc:
            missing = [str(e["loc"][0]).upper() for e in exc.errors() if e["type"] == "missing"]
            if missing:
                raise RuntimeError(
                    f"settings missing: {', '.join(missing)}; run `skiff init` to write "
                    f"{env_file}") from None
            raise

    @property
    def buckets(self) -> list[str]:
        return [b.strip() for b in self.s3_buckets.split(",") if b.strip()]

    @property
    def topics(self) -> list[str]:
        return [t.strip() for t in self.kafka_topics.split(",") if t.strip()]

    @property
    def advertised_host(self) -> str:
        """The address other processes reach this one at: ``bind_host``, or, when binding
        every interface (in a container), this machine's own address, which differs for
        each replica of a scaled service."""
        if self.bind_host not in ("0.0.0.0", "::", ""):
            return self.bind_host
        return socket.gethostbyname(socket.gethostname())

    def host(self, service: str) -> str:
        """The address clients use for ``service``."""
        return getattr(self, f"{service}_host", None) or self.bind_host

    @property
    def public_url(self) -> str:
        """The one address people and devices use, e.g. ``https://localhost:8443``."""
        port = "" if self.https_port == 443 else f":{self.https_port}"
        return f"https://{self.public_host}{port}"

    @property
    def keycloak_issuer(self) -> str:
        """The ``iss`` of every token: always the public URL, inside and outside."""
        return f"{self.public_url}/auth/realms/{self.keycloak_realm}"

    @property
    def keycloak_internal_url(self) -> str:
        """Keycloak for services on the platform's network (back-channel: tokens, JWKS)."""
        return f"http://{self.host('keycloak')}:{self.keycloak_port}/auth"

    def tls_files(self, root: Path) -> tuple[Path, Path]:
        """The certificate and key Traefik serves (generated in certs/ unless set)."""
        cert = Path(self.tls_cert_file) if self.tls_cert_file else root / "certs" / "skiff.crt"
        key = Path(self.tls_key_file) if self.tls_key_file else root / "certs" / "skiff.key"
        return cert, key

    @property
    def s3_endpoint(self) -> str:
        return f"http://{self.host('s3')}:{self.s3_port}"
