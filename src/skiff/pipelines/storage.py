"""Where a pipeline's files live in the S3 store, and the few operations on them.

One folder per submission, ``<bucket>/<dag id>/<submission id>/``:

- ``<node>.tar.gz``: the node's notebook or script and its declared dependencies,
  as of the submission (paths relative to the notebook's folder);
- ``runs/<run id>/outputs/<path>``: the files nodes declared as outputs, shared by
  the run's nodes (Elyra's semantics: every output is an input of every later node);
- ``runs/<run id>/<node>/``: what a node left behind: the executed notebook, a
  script's log.
"""

from __future__ import annotations

import fnmatch
import io
import os
import re
import tarfile
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

from minio import Minio

from skiff import archives

ARCHIVE_SUFFIX = ".tar.gz"


class StorageError(RuntimeError):
    """A file is missing or the store refused; the message names the object."""


def archive_key(prefix: str, node: str) -> str:
    return f"{prefix}/{node}{ARCHIVE_SUFFIX}"


def safe_run_id(run_id: str) -> str:
    """An Airflow run id (``manual__2026-01-01T00:00:00+00:00``) as one safe path segment."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", run_id).strip("_") or "run"


def run_prefix(prefix: str, run_id: str) -> str:
    return f"{prefix}/runs/{safe_run_id(run_id)}"


def outputs_prefix(prefix: str, run_id: str) -> str:
    return f"{run_prefix(prefix, run_id)}/outputs"


def node_prefix(prefix: str, run_id: str, node: str) -> str:
    return f"{run_prefix(prefix, run_id)}/{node}"


def client_from_endpoint(endpoint: str, access_key: str, secret_key: str,
                         region: str | None = None) -> Minio:
    """A client for ``http(s)://host:port`` (the workspace's view of the store)."""
    parts = urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
    if not parts.hostname:
        raise StorageError(f"S3 endpoint {endpoint!r} names no host")
    netloc = parts.netloc.rsplit("@", 1)[-1]
    # Without a region minio first asks the bucket's location, which a person's keys
    # may not (they reach their own folders only).
    region = region or os.environ.get("S3_REGION") or None
    return Minio(netloc, access_key=access_key, secret_key=secret_key, region=region,
                 secure=parts.scheme == "https")


def client_from_env(env: dict[str, str] | os._Environ[str] = os.environ) -> Minio:
    """A client from S3_HOST, S3_PORT, S3_ACCESS_KEY, S3_SECRET_KEY, S3_REGION (Airflow's env)."""
    missing = [name for name in ("S3_ACCESS_KEY", "S3_SECRET_KEY") if not env.get(name)]
    if missing:
        raise StorageError(f"{', '.join(missing)} not set: the runner reads the S3 store's "
                           "address and keys from S3_HOST, S3_PORT, S3_ACCESS_KEY, S3_SECRET_KEY")
    return Minio(f"{env.get('S3_HOST', '127.0.0.1')}:{env.get('S3_PORT', '7070')}",
                 access_key=env["S3_ACCESS_KEY"], secret_key=env["S3_SECRET_KEY"],
                 region=env.get("S3_REGION") or None, secure=False)


def ensure_bucket(s3: Minio, bucket: str) -> None:
    if not s3.bucket_exists(bucket):
        s3.make_bucket(bucket)


def pack(source_dir: Path, patterns: Iterable[str], include_subdirectories: bool = False) -> bytes:
    """A tar.gz of the files ``patterns`` name under ``source_dir`` (paths kept relative).

    A pattern is a file, a folder (its files; its subfolders' too with
    ``include_subdirectories``) or a glob. One that matches nothing is an error:
    a node must not start without a file it declared.
    """
    # Paths are judged before symlinks are followed: a notebook may be a link to a
    # shared copy, but no pattern may climb out of the folder ("../x").
    root = Path(os.path.abspath(source_dir))
    chosen: dict[str, Path] = {}
    for pattern in patterns:
        matches = sorted(root.glob(pattern)) if any(c in pattern for c in "*?[") else [root / pattern]
        matches = [m for m in matches if m.exists()]
        if not matches:
            raise StorageError(f"{pattern!r} matches no file in {root}")
        for match in matches:
            files = [match] if match.is_file() else sorted(
                p for p in (match.rglob("*") if include_subdirectories else match.iterdir()) if p.is_file())
            for path in files:
                absolute = Path(os.path.abspath(path))
                if not absolute.is_relative_to(root):
                    raise StorageError(f"{pattern!r} reaches {absolute}, outside {root}")
                chosen[str(absolute.relative_to(root))] = path.resolve()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, path in sorted(chosen.items()):
            tar.add(path, arcname=name, recursive=False)
    return buffer.getvalue()


def unpack(data: bytes, dest: Path) -> list[str]:
    """Extract an archive made by :func:`pack` into ``dest``; returns the member names."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        archives.extract(tar, dest)
        return tar.getnames()


def put_bytes(s3: Minio, bucket: str, key: str, data: bytes, content_type: str) -> None:
    from minio.error import S3Error

    try:
        s3.put_object(bucket, key, io.BytesIO(data), len(data), content_type=content_type)
    except S3Error as exc:
        if exc.code == "NoSuchBucket":
            raise StorageError(f"bucket {bucket} does not exist: the platform creates it "
                               "(skiff bootstrap s3)") from None
        if exc.code == "AccessDenied":
            raise StorageError(f"the S3 store refused to write s3://{bucket}/{key} with these "
                               "keys: a person's keys write only under their own name") from None
        raise


def get_bytes(s3: Minio, bucket: str, key: str) -> bytes:
    from minio.error import S3Error

    try:
        response = s3.get_object(bucket, key)
    except S3Error as exc:
        if exc.code in ("NoSuchKey", "NoSuchBucket"):
            raise StorageError(f"s3://{bucket}/{key} does not exist") from None
        raise
    try:
        return response.read()
    finally:
        response.close()
        response.release_conn()


def list_keys(s3: Minio, bucket: str, prefix: str) -> list[str]:
    """Object keys under ``prefix/``, relative to it."""
    base = prefix.rstrip("/") + "/"
    return sorted(obj.object_name[len(base):] for obj in s3.list_objects(bucket, prefix=base, recursive=True)
                  if obj.object_name and not obj.is_dir)


def matching(keys: Iterable[str], pattern: str) -> list[str]:
    """The keys a declared output or input pattern names (a path or a glob)."""
    pattern = pattern.strip().removeprefix("./")
    return [k for k in keys if k == pattern or fnmatch.fnmatchcase(k, pattern)]
