"""Versity S3 Gateway as its root account: IAM accounts, bucket owners, bucket policies.

Accounts and bucket ownership go through the gateway's admin API (the calls
behind ``versitygw admin create-user``/``list-users``/``list-buckets``/
``change-bucket-owner``: PATCH requests signed with SigV4 like any S3 call,
served on the S3 port when no ``--admin-port`` is given). Buckets and their
policies go through the ordinary S3 API (minio).

What the gateway enforces with its internal IAM (v1.8.0, auth/access-control.go):
root and ``admin`` accounts bypass every check; for everyone else a bucket
*with* a policy is decided by the policy alone (principals are access key ids),
a bucket *without* one by its ACL (the owner has full control). Policy
principals must name existing accounts, or the gateway refuses the policy.
"""

from __future__ import annotations

import hashlib
import json
import urllib.parse
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import urllib3
from minio import Minio
from minio.credentials import Credentials
from minio.error import S3Error
from minio.signer import sign_v4_s3

ARN = "arn:aws:s3:::"
# What a member may do in a team bucket and an owner under their public prefix:
# data, not the bucket's policy, ACL or lifecycle (a member must not be able to
# let an outsider in, or lock the team out).
BUCKET_READ = ["s3:ListBucket", "s3:GetBucketLocation"]
BUCKET_WRITE = ["s3:ListBucketMultipartUploads"]
OBJECT_READ = ["s3:GetObject", "s3:GetObjectAttributes", "s3:GetObjectTagging"]
OBJECT_WRITE = ["s3:PutObject", "s3:PutObjectTagging", "s3:DeleteObject",
                "s3:DeleteObjectTagging", "s3:AbortMultipartUpload",
                "s3:ListMultipartUploadParts"]


class GatewayError(RuntimeError):
    """The gateway refused or failed an admin call; the message carries its code."""

    def __init__(self, call: str, status: int, code: str, message: str) -> None:
        super().__init__(f"versitygw {call}: HTTP {status} {code}: {message}")
        self.code = code


@dataclass(frozen=True)
class S3Config:
    endpoint: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"

    @classmethod
    def from_env(cls, env: Any) -> S3Config:
        """S3_ENDPOINT, or S3_HOST/S3_PORT (the names of .env and Compose); root keys."""
        missing = [k for k in ("S3_ACCESS_KEY", "S3_SECRET_KEY") if not env.get(k)]
        if missing:
            raise RuntimeError(f"catalog: {', '.join(missing)} not set (the S3 root account, "
                               "needed to provision data sources)")
        endpoint = env.get("S3_ENDPOINT") or \
            f"http://{env.get('S3_HOST') or '127.0.0.1'}:{env.get('S3_PORT') or 7070}"
        return cls(endpoint=endpoint.rstrip("/"), access_key=env["S3_ACCESS_KEY"],
                   secret_key=env["S3_SECRET_KEY"], region=env.get("S3_REGION") or "us-east-1")


def minio_client(endpoint: str, access_key: str, secret_key: str, region: str) -> Minio:
    """A minio client that fails fast when the gateway is down (no endless retries)."""
    http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=3, read=30),
                               retries=urllib3.Retry(total=2, backoff_factor=0.2))
    return Minio(endpoint.split("://", 1)[-1], access_key=access_key, secret_key=secret_key,
                 secure=endpoint.startswith("https://"), region=region, http_client=http)


def team_policy(bucket: str, members: set[str]) -> dict[str, Any]:
    """Every member's account reads and writes the bucket's objects."""
    who = {"AWS": sorted(members)}
    return {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": who, "Action": BUCKET_READ + BUCKET_WRITE,
         "Resource": [f"{ARN}{bucket}"]},
        {"Effect": "Allow", "Principal": who, "Action": OBJECT_READ + OBJECT_WRITE,
         "Resource": [f"{ARN}{bucket}/*"]},
    ]}


def public_policy(bucket: str, writers: dict[str, str]) -> dict[str, Any]:
    """Every account reads everything; each writes under its own prefix only.

    ``writers`` maps access key -> prefix. Anonymous requests stay refused: the
    principals are the accounts, never ``*``.
    """
    readers = {"AWS": sorted(writers)}
    statements: list[dict[str, Any]] = [
        {"Effect": "Allow", "Principal": readers, "Action": BUCKET_READ,
         "Resource": [f"{ARN}{bucket}"]},
        {"Effect": "Allow", "Principal": readers, "Action": OBJECT_READ,
         "Resource": [f"{ARN}{bucket}/*"]},
    ]
    statements += [
        {"Effect": "Allow", "Principal": {"AWS": [key]}, "Action": OBJECT_WRITE,
         "Resource": [f"{ARN}{bucket}/{prefix}/*"]}
        for key, prefix in sorted(writers.items())]
    return {"Version": "2012-10-17", "Statement": statements}


def own_folders_statement(bucket: str, key: str, actions: list[str],
                          folders: list[str]) -> dict[str, Any]:
    """The account ``key`` may do ``actions`` on objects whose key begins with one of ``folders``."""
    return {"Effect": "Allow", "Principal": {"AWS": [key]}, "Action": actions,
            "Resource": [f"{ARN}{bucket}/{folder}*" for folder in folders]}


def with_statement_of(policy: dict[str, Any] | None, key: str, statement: dict[str, Any] | None,
                      accounts: set[str]) -> dict[str, Any] | None:
    """``policy`` with ``key``'s own statement replaced by ``statement`` (None: removed).

    Statements naming an account that no longer exists are dropped (the gateway would
    refuse the whole policy); the order is fixed, so an unchanged policy compares equal.
    """
    kept = [st for st in (policy or {}).get("Statement", [])
            if principals({"Statement": [st]}) <= accounts
            and principals({"Statement": [st]}) != {key}]
    if statement is not None:
        kept.append(statement)
    if not kept:
        return None
    kept.sort(key=lambda st: json.dumps(st, sort_keys=True))
    return {"Version": "2012-10-17", "Statement": kept}


def principals(policy: dict[str, Any] | None) -> set[str]:
    """Every access key a policy names (``{"AWS": ...}``, a list, or one string)."""
    found: set[str] = set()
    for statement in (policy or {}).get("Statement", []):
        who = statement.get("Principal", {})
        if isinstance(who, dict):
            who = who.get("AWS", [])
        found.update([who] if isinstance(who, str) else who)
    found.discard("*")
    return found


class Gateway:
    """One gateway, addressed as its root account."""

    def __init__(self, config: S3Config, timeout: float = 30.0) -> None:
        self.config = config
        self.s3 = minio_client(config.endpoint, config.access_key, config.secret_key,
                               config.region)
        self._http = httpx.Client(timeout=timeout)
        self._credentials = Credentials(config.access_key, config.secret_key)

    def close(self) -> None:
        self._http.close()

    def _admin(self, call: str, path: str, *, body: bytes = b"",
               query: dict[str, str] | None = None,
               headers: dict[str, str] | None = None) -> ET.Element | None:
        url = f"{self.config.endpoint}/{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query, quote_via=urllib.parse.quote)
        split = urllib.parse.urlsplit(url)
        now = datetime.now(UTC)
        sha = hashlib.sha256(body).hexdigest()
        signed = sign_v4_s3(
            method="PATCH", url=split, region=self.config.region, credentials=self._credentials,
            content_sha256=sha, date=now,
            headers={"Host": split.netloc, "x-amz-date": now.strftime("%Y%m%dT%H%M%SZ"),
                     "x-amz-content-sha256": sha, **(headers or {})})
        answer = self._http.patch(url, content=body, headers={
            k: v if isinstance(v, str) else ",".join(v) for k, v in signed.items()})
        root = ET.fromstring(answer.content) if answer.content.strip() else None
        if answer.status_code >= 400:
            code = root.findtext("Code", "") if root is not None else ""
            message = root.findtext("Message", "") if root is not None else answer.text
            raise GatewayError(call, answer.status_code, code, message)
        return root

    def accounts(self) -> dict[str, str]:
        """Access key -> secret of every IAM account (the admin API returns both)."""
        root = self._admin("list-users", "list-users")
        found = {}
        for account in root.iter("Accounts") if root is not None else []:
            found[account.findtext("Access", "")] = account.findtext("Secret", "")
        return found

    def create_account(self, access: str, secret: str, role: str = "user") -> None:
        body = (f"<Account><Access>{_xml(access)}</Access><Secret>{_xml(secret)}</Secret>"
                f"<Role>{_xml(role)}</Role></Account>").encode()
        self._admin("create-user", "create-user", body=body)

    def delete_account(self, access: str) -> None:
        self._admin("delete-user", "delete-user", query={"access": access})

    def bucket_owners(self) -> dict[str, str]:
        """Bucket -> owner's access key, for every bucket."""
        root = self._admin("list-buckets", "list-buckets")
        return {b.findtext("Name", ""): b.findtext("Owner", "")
                for b in (root.iter("Buckets") if root is not None else [])}

    def create_bucket(self, bucket: str, owner: str | None = None) -> None:
        """A bucket owned by root, or by ``owner`` (the admin API's create, in one step)."""
        if owner is None:
            self.s3.make_bucket(bucket)
        else:
            self._admin("create-bucket", f"{bucket}/create", headers={"x-vgw-owner": owner})

    def change_owner(self, bucket: str, owner: str) -> None:
        """Hand a bucket to ``owner``; the gateway drops its policy and resets its ACL."""
        self._admin("change-bucket-owner", "change-bucket-owner",
                    query={"bucket": bucket, "owner": owner})

    def policy(self, bucket: str) -> dict[str, Any] | None:
        try:
            return json.loads(self.s3.get_bucket_policy(bucket))
        except S3Error as exc:
            if exc.code == "NoSuchBucketPolicy":
                return None
            raise

    def set_policy(self, bucket: str, policy: dict[str, Any] | None) -> None:
        if policy is None:
            self.s3.delete_bucket_policy(bucket)
        else:
            self.s3.set_bucket_policy(bucket, json.dumps(policy))


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
