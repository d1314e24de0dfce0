"""The S3 side of a batch: checking an output place is free, streaming a local input up.

minio's client, as everywhere else on the platform: a local file goes up as a
multipart upload read part by part, so memory stays at a few parts whatever the
file's size.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Protocol

from minio import Minio
from minio.error import S3Error

from skiff.scoring.locations import LocationError, S3Location

PART_SIZE = 16 << 20
# S3's limit on the parts of one upload.
MAX_PARTS = 10_000


class UploadProgress(Protocol):
    def set_meta(self, object_name: str, total_length: int) -> None: ...
    def update(self, length: int) -> None: ...


def check_input(client: Minio, where: S3Location) -> int:
    """The input object's size; LocationError if the bucket or object is missing."""
    try:
        return int(client.stat_object(where.bucket, where.key).size or 0)
    except S3Error as exc:
        if exc.code in ("NoSuchKey", "NoSuchBucket", "NotFound", "ResourceNotFound"):
            raise LocationError(f"input {where.uri} does not exist ({exc.code})") from None
        raise


def check_output(client: Minio, where: S3Location) -> None:
    """LocationError unless the bucket exists and nothing is stored under the output path yet."""
    if not client.bucket_exists(where.bucket):
        raise LocationError(f"--out {where.uri}: there is no bucket {where.bucket!r} in the S3 store")
    for _ in client.list_objects(where.bucket, prefix=f"{where.key}/", recursive=True):
        raise LocationError(f"--out {where.uri} already holds results; choose a new path "
                            "(results are never overwritten)")


def part_size(size: int) -> int:
    """16 MiB parts, larger only when a file would need more parts than S3 allows."""
    return max(PART_SIZE, math.ceil(size / MAX_PARTS / (1 << 20)) << 20)


def upload(client: Minio, path: Path, where: S3Location, progress: UploadProgress | None = None) -> None:
    """Stream ``path`` to ``where`` (one part in memory at a time)."""
    if not client.bucket_exists(where.bucket):
        raise LocationError(f"there is no bucket {where.bucket!r} in the S3 store to upload to")
    size = path.stat().st_size
    client.fput_object(where.bucket, where.key, str(path), content_type="text/csv",
                       progress=progress, part_size=part_size(size), num_parallel_uploads=1)
