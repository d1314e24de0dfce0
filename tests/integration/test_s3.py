"""The S3 store, through the project's S3 client (minio)."""

from __future__ import annotations

import io
import uuid

import pytest
from minio.error import S3Error

from skiff.native.context import Context
from skiff.services import s3

pytestmark = pytest.mark.integration


def test_object_put_is_read_back_byte_for_byte(stack: Context) -> None:
    client = s3.root_client(stack)
    key = f"tests/{uuid.uuid4()}.bin"
    payload = uuid.uuid4().bytes * 1000
    client.put_object("datasets", key, io.BytesIO(payload), len(payload))
    got = client.get_object("datasets", key)
    try:
        assert got.read() == payload
    finally:
        got.close()
        got.release_conn()
    client.remove_object("datasets", key)


def test_bootstrap_created_every_configured_bucket(stack: Context) -> None:
    names = {b.name for b in s3.root_client(stack).list_buckets()}
    assert set(stack.settings.buckets) <= names


def test_wrong_secret_is_refused_by_the_server(stack: Context) -> None:
    s = stack.settings
    intruder = s3.client(s.s3_endpoint, s.s3_access_key, "not-the-secret")
    with pytest.raises(S3Error) as refused:
        list(intruder.list_objects("datasets"))
    assert refused.value.code in {"SignatureDoesNotMatch", "AccessDenied", "InvalidAccessKeyId"}
