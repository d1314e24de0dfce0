"""Where a batch is read from and written to: ``s3://bucket/key`` in the S3 store."""

from __future__ import annotations

from dataclasses import dataclass


class LocationError(ValueError):
    """An input or output location that is not usable; the message says which and why."""


@dataclass(frozen=True)
class S3Location:
    bucket: str
    key: str

    @classmethod
    def parse(cls, uri: str, what: str) -> S3Location:
        if not uri.startswith("s3://"):
            raise LocationError(f"{what} must be an s3://bucket/path URI, got {uri!r}")
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        key = key.strip("/")
        if not bucket or not key:
            raise LocationError(f"{what} must name a bucket and a path in it (s3://bucket/path), "
                                f"got {uri!r}")
        return cls(bucket, key)

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def s3a(self) -> str:
        """The same place for Hadoop's S3A filesystem, which Spark reads and writes with."""
        return f"s3a://{self.bucket}/{self.key}"

    def child(self, name: str) -> S3Location:
        return S3Location(self.bucket, f"{self.key}/{name}")
