"""Managed stores without a gateway: names, policies, the portal's login call when it fails."""

from __future__ import annotations

import logging
import re
import socket

import pytest

from serving.catalog import stores
from serving.catalog.s3gateway import S3Config, principals, public_policy, team_policy
from serving.portal import catalog as portal_catalog

pytestmark = pytest.mark.unit

# S3's bucket naming rules (what versitygw checks too), the 5-character prefix included.
BUCKET = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")


@pytest.mark.parametrize("name", ["alice", "bob.smith@example.org", "Data Science", "a",
                                  "UPPER", "x" * 63, "--", "team_1", "ü-nicode"])
def test_every_name_gives_a_valid_bucket(name: str) -> None:
    for bucket in (stores.user_bucket(name), stores.team_bucket(name)):
        assert BUCKET.match(bucket), bucket
        assert len(bucket) <= 63


def test_a_name_that_is_already_s3_safe_stays_readable() -> None:
    assert stores.user_bucket("alice") == "user-alice"
    assert stores.team_bucket("fraud-2") == "team-fraud-2"
    assert stores.access_key("alice") == "skiff-alice"


def test_names_that_would_collide_get_distinct_buckets() -> None:
    names = ["a.b", "a-b", "a_b", "A-B", "a@b", "x" * 70, "x" * 71]
    assert len({stores.user_bucket(n) for n in names}) == len(names)
    assert len({stores.access_key(n) for n in names}) == len(names)


def test_team_policy_names_members_and_no_bucket_administration() -> None:
    policy = team_policy("team-fraud", {"skiff-bob", "skiff-alice"})
    assert principals(policy) == {"skiff-alice", "skiff-bob"}
    actions = {a for s in policy["Statement"] for a in s["Action"]}
    assert {"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket"} <= actions
    # A member must not be able to let an outsider in or take the bucket away.
    assert not actions & {"s3:*", "s3:PutBucketPolicy", "s3:DeleteBucketPolicy",
                          "s3:PutBucketAcl", "s3:DeleteBucket"}
    resources = {r for s in policy["Statement"] for r in s["Resource"]}
    assert resources == {"arn:aws:s3:::team-fraud", "arn:aws:s3:::team-fraud/*"}


def test_public_policy_reads_for_every_account_and_writes_under_each_prefix() -> None:
    policy = public_policy("public", {"skiff-alice": "alice", "skiff-bob": "bob"})
    assert principals(policy) == {"skiff-alice", "skiff-bob"}
    assert all(s["Principal"] != "*" for s in policy["Statement"])
    writes = {s["Principal"]["AWS"][0]: s["Resource"] for s in policy["Statement"]
              if "s3:PutObject" in s["Action"]}
    assert writes == {"skiff-alice": ["arn:aws:s3:::public/alice/*"],
                      "skiff-bob": ["arn:aws:s3:::public/bob/*"]}


def test_principals_reads_every_form_aws_allows() -> None:
    assert principals(None) == set()
    assert principals({"Statement": [{"Principal": "k1"}, {"Principal": ["k2"]},
                                     {"Principal": {"AWS": "k3"}}, {"Principal": "*"}]}) == \
        {"k1", "k2", "k3"}


def test_reserved_names_are_the_managed_stores_only() -> None:
    assert stores.is_reserved("data_source", "public")
    assert stores.is_reserved("data_source", "user-alice")
    assert stores.is_reserved("data_source", "team-fraud")
    assert not stores.is_reserved("data_source", "sales-db")
    assert not stores.is_reserved("dataset", "user-alice")


def test_a_managed_spec_never_carries_the_secret() -> None:
    store = stores.Store(name="user-alice", bucket="user-alice", owner="alice", team=None,
                         access="private", description="",
                         secret={"access_key": "skiff-alice", "secret_key": "s3cr3t-value"})
    spec = store.spec(S3Config("http://s3:7070", "root", "rootsecret", "eu-west-1"))
    assert spec == {"type": "s3", "managed": True,
                    "s3": {"endpoint": "http://s3:7070", "bucket": "user-alice",
                           "region": "eu-west-1"}}
    assert "s3cr3t-value" not in repr(store)


def test_s3_config_from_the_names_of_env_and_compose() -> None:
    cfg = S3Config.from_env({"S3_HOST": "s3", "S3_PORT": "7070", "S3_ACCESS_KEY": "a",
                             "S3_SECRET_KEY": "b"})
    assert (cfg.endpoint, cfg.region) == ("http://s3:7070", "us-east-1")
    with pytest.raises(RuntimeError, match="S3_SECRET_KEY"):
        S3Config.from_env({"S3_ACCESS_KEY": "a"})


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_login_call_to_an_absent_catalog_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="serving.portal.catalog"):
        ok = portal_catalog.announce(f"http://127.0.0.1:{_closed_port()}", "token", "alice",
                                     timeout=2)
    assert ok is False
    assert "provisioning alice at login failed" in caplog.text


def test_no_catalog_configured_means_no_call() -> None:
    assert portal_catalog.announce_in_background(None, "token", "alice") is None
    assert portal_catalog.announce_in_background("http://catalog:8400", "", "alice") is None
