"""What the stores tests share: objects in and out with someone's keys, the refusal, and
removing what a test made on the gateway (buckets, their objects, accounts)."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable

import pytest
from minio import Minio
from minio.error import S3Error

from serving.catalog import stores
from serving.catalog.s3gateway import Gateway


def put(s3: Minio, bucket: str, key: str, body: bytes = b"data") -> None:
    s3.put_object(bucket, key, io.BytesIO(body), len(body))


def get(s3: Minio, bucket: str, key: str) -> bytes:
    resp = s3.get_object(bucket, key)
    try:
        return resp.read()
    finally:
        resp.close()
        resp.release_conn()


def denied(action: Callable[[], object]) -> None:
    """``action`` is refused by the gateway itself (AccessDenied)."""
    with pytest.raises(S3Error) as caught:
        action()
    assert caught.value.code == "AccessDenied", caught.value


def purge(gateway: Gateway, users: Iterable[str], teams: Iterable[str]) -> None:
    users, teams = list(users), list(teams)
    owners = gateway.bucket_owners()
    buckets = [stores.user_bucket(u) for u in users] + [stores.team_bucket(t) for t in teams]
    for bucket in (b for b in buckets if b in owners):
        for obj in gateway.s3.list_objects(bucket, recursive=True):
            gateway.s3.remove_object(bucket, obj.object_name)
        gateway.s3.remove_bucket(bucket)
    for user in users:
        prefix = f"{stores.public_prefix(stores.access_key(user))}/"
        for obj in gateway.s3.list_objects(stores.PUBLIC, prefix=prefix, recursive=True):
            gateway.s3.remove_object(stores.PUBLIC, obj.object_name)
    accounts = gateway.accounts()
    for key in (stores.access_key(u) for u in users):
        if key in accounts:
            gateway.delete_account(key)
