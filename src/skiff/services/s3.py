"""The S3 object store: Versity S3 Gateway over a plain folder.

Why this server: docs/decisions/0001-s3-store.md. Natively it is built from the
Go module proxy; in Compose it is the ``versity/versitygw`` image. Its internal
IAM keeps per-user accounts in a folder, which later issues use for per-user and
per-team buckets.
"""

from __future__ import annotations

from pathlib import Path

import urllib3
from minio import Minio
from minio.error import S3Error

from skiff.native import installing, system
from skiff.native.context import Context
from skiff.native.spec import NotReady, Program, Service
from skiff.settings import Settings

PACKAGE = "github.com/versity/versitygw/cmd/versitygw"
HEALTH_PATH = "/health"


def binary(ctx: Context) -> Path:
    return ctx.component("versitygw", ctx.versions.versitygw_version) / "bin" / "versitygw"


def install(ctx: Context) -> None:
    version = ctx.versions.versitygw_version
    installing.go_binary("s3", PACKAGE, version, ctx.component("versitygw", version), "versitygw",
                         go=lambda: system.go_bin(ctx))


def programs(ctx: Context) -> list[Program]:
    s = ctx.settings
    data = ctx.data_dir("s3")
    (data / "buckets").mkdir(exist_ok=True)
    (data / "iam").mkdir(exist_ok=True)
    (data / "meta").mkdir(exist_ok=True)
    return [Program(
        name="s3",
        command=[str(binary(ctx)),
                 "--port", f"{s.bind_host}:{s.s3_port}",
                 "--region", s.s3_region,
                 "--iam-dir", str(data / "iam"),
                 "--health", HEALTH_PATH,
                 "--quiet",
                 # Sidecar metadata works on any filesystem, xattrs don't (overlayfs, tmpfs).
                 "posix", "--sidecar", str(data / "meta"), str(data / "buckets")],
        # Credentials through the environment keep them out of `ps`.
        env={"ROOT_ACCESS_KEY_ID": s.s3_access_key,
             "ROOT_SECRET_ACCESS_KEY": s.s3_secret_key.get_secret_value()},
    )]


def client(endpoint: str, access_key: str, secret_key: str, region: str = "us-east-1") -> Minio:
    """A minio client for an ``http://host:port`` endpoint, failing fast when it is down."""
    secure = endpoint.startswith("https://")
    host = endpoint.split("://", 1)[-1]
    http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=3, read=30),
                               retries=urllib3.Retry(total=2, backoff_factor=0.2))
    return Minio(host, access_key=access_key, secret_key=secret_key, secure=secure,
                 region=region, http_client=http)


def root_client(ctx: Context) -> Minio:
    s = ctx.settings
    return client(s.s3_endpoint, s.s3_access_key, s.s3_secret_key.get_secret_value(), s.s3_region)


def client_env(settings: Settings) -> dict[str, str]:
    """The variables a service needs to act as the store's root account (the catalog's
    provisioning of users' stores: serving/catalog/s3gateway.py), as in .env and Compose."""
    return {"S3_HOST": settings.host("s3"), "S3_PORT": str(settings.s3_port),
            "S3_REGION": settings.s3_region, "S3_ACCESS_KEY": settings.s3_access_key,
            "S3_SECRET_KEY": settings.s3_secret_key.get_secret_value()}


def ready(ctx: Context) -> None:
    try:
        root_client(ctx).list_buckets()
    except (urllib3.exceptions.HTTPError, S3Error, OSError) as exc:
        raise NotReady(f"{type(exc).__name__}: {exc}") from exc


def ensure_buckets(s3: Minio, buckets: list[str]) -> list[str]:
    """Create the missing buckets; used by native bootstrap and Compose's s3-init job."""
    created = []
    for bucket in buckets:
        if not s3.bucket_exists(bucket):
            s3.make_bucket(bucket)
            created.append(bucket)
    return created


def bootstrap(ctx: Context) -> None:
    ensure_buckets(root_client(ctx), ctx.settings.buckets)


SERVICE = Service(
    name="s3",
    description="S3 object store (Versity S3 Gateway): datasets, models, artifacts",
    programs=programs,
    ready=ready,
    url=lambda ctx: ctx.settings.s3_endpoint,
    ports=lambda ctx: [ctx.settings.s3_port],
    install=install,
    bootstrap=bootstrap,
    start_timeout=30,
)
