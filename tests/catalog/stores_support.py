"""Removing what a stores test made on the gateway: buckets, their objects, accounts."""

from __future__ import annotations

from collections.abc import Iterable

from serving.catalog import stores
from serving.catalog.s3gateway import Gateway


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
