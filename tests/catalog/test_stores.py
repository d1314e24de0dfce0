"""Users' and teams' stores on the real Versity S3 Gateway: the gateway itself refuses.

Every request here is signed with one user's own keys (what provisioning gave
them) and sent to the running gateway; AccessDenied comes from its policies
and ACLs, not from any code of ours. Two teams, three users:
alice and bob in team A, carol in team B.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from minio import Minio

from serving.catalog import stores
from serving.catalog.s3gateway import Gateway, S3Config, minio_client
from skiff.native.context import Context
from tests.catalog.stores_support import denied, get, purge, put

pytestmark = pytest.mark.integration


@dataclass
class Person:
    name: str
    outcome: stores.Outcome
    s3: Minio

    @property
    def bucket(self) -> str:
        return stores.user_bucket(self.name)

    @property
    def key(self) -> str:
        return stores.access_key(self.name)


@pytest.fixture(scope="module")
def config(stack: Context) -> S3Config:
    s = stack.settings
    return S3Config(s.s3_endpoint, s.s3_access_key, s.s3_secret_key.get_secret_value(), s.s3_region)


@pytest.fixture(scope="module")
def gateway(config: S3Config) -> Iterator[Gateway]:
    gw = Gateway(config)
    yield gw
    gw.close()


@pytest.fixture(scope="module")
def world(gateway: Gateway, config: S3Config) -> Iterator[dict[str, object]]:
    """Fresh users and teams (a random suffix: reruns never meet old buckets)."""
    suffix = uuid.uuid4().hex[:8]
    team_a, team_b = f"Stores A {suffix}", f"stores-b-{suffix}"
    people = {}
    for who, teams in (("alice", [team_a]), ("bob", [team_a]), ("carol", [team_b])):
        name = f"st-{who}-{suffix}"
        outcome = stores.ensure(gateway, name, teams)
        secret = outcome.stores[0].secret
        assert secret is not None
        people[who] = Person(name, outcome, minio_client(
            config.endpoint, secret["access_key"], secret["secret_key"], config.region))
    yield {"people": people, "team_a": stores.team_bucket(team_a),
           "team_b": stores.team_bucket(team_b), "teams": (team_a, team_b)}
    purge(gateway, [p.name for p in people.values()], [team_a, team_b])


def person(world: dict[str, object], who: str) -> Person:
    people = world["people"]
    assert isinstance(people, dict)
    return people[who]  # type: ignore[no-any-return]


def test_a_user_uses_their_own_bucket(world: dict[str, object]) -> None:
    alice = person(world, "alice")
    put(alice.s3, alice.bucket, "mine.csv", b"a,b\n1,2\n")
    assert get(alice.s3, alice.bucket, "mine.csv") == b"a,b\n1,2\n"
    assert [o.object_name for o in alice.s3.list_objects(alice.bucket)] == ["mine.csv"]
    alice.s3.remove_object(alice.bucket, "mine.csv")
    # Their own bucket is the one they see listed: the gateway's owner, not ours.
    assert alice.bucket in [b.name for b in alice.s3.list_buckets()]


def test_another_users_keys_are_refused_on_a_private_bucket(world: dict[str, object]) -> None:
    alice, bob, carol = (person(world, w) for w in ("alice", "bob", "carol"))
    put(alice.s3, alice.bucket, "private.txt")
    for other in (bob, carol):
        denied(lambda o=other: get(o.s3, alice.bucket, "private.txt"))
        denied(lambda o=other: put(o.s3, alice.bucket, "intruder.txt"))
        denied(lambda o=other: list(o.s3.list_objects(alice.bucket)))
        denied(lambda o=other: o.s3.remove_object(alice.bucket, "private.txt"))
    assert get(alice.s3, alice.bucket, "private.txt") == b"data"


def test_team_members_share_the_team_bucket(world: dict[str, object]) -> None:
    alice, bob = person(world, "alice"), person(world, "bob")
    team = str(world["team_a"])
    put(alice.s3, team, "shared/plan.txt", b"from alice")
    assert get(bob.s3, team, "shared/plan.txt") == b"from alice"
    put(bob.s3, team, "shared/plan.txt", b"from bob")
    assert get(alice.s3, team, "shared/plan.txt") == b"from bob"
    assert [o.object_name for o in bob.s3.list_objects(team, recursive=True)] == ["shared/plan.txt"]


def test_a_non_member_is_refused_on_a_team_bucket(world: dict[str, object]) -> None:
    carol, alice = person(world, "carol"), person(world, "alice")
    team_a, team_b = str(world["team_a"]), str(world["team_b"])
    put(alice.s3, team_a, "team-only.txt")
    denied(lambda: get(carol.s3, team_a, "team-only.txt"))
    denied(lambda: put(carol.s3, team_a, "carol.txt"))
    denied(lambda: list(carol.s3.list_objects(team_a)))
    denied(lambda: list(alice.s3.list_objects(team_b)))


def test_a_member_cannot_let_outsiders_into_the_team_bucket(world: dict[str, object]) -> None:
    alice = person(world, "alice")
    team = str(world["team_a"])
    open_to_all = ('{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*",'
                   f'"Action":"s3:*","Resource":["arn:aws:s3:::{team}","arn:aws:s3:::{team}/*"]}}]}}')
    denied(lambda: alice.s3.set_bucket_policy(team, open_to_all))
    denied(lambda: alice.s3.delete_bucket_policy(team))


def test_everyone_reads_public_and_writes_only_their_own_folder(world: dict[str, object]) -> None:
    alice, carol = person(world, "alice"), person(world, "carol")
    own = f"{stores.public_prefix(alice.key)}/report.txt"
    put(alice.s3, stores.PUBLIC, own, b"for everyone")
    assert get(carol.s3, stores.PUBLIC, own) == b"for everyone"
    assert own in [o.object_name for o in carol.s3.list_objects(stores.PUBLIC, recursive=True)]
    denied(lambda: put(carol.s3, stores.PUBLIC, own, b"overwritten"))
    denied(lambda: carol.s3.remove_object(stores.PUBLIC, own))
    denied(lambda: put(alice.s3, stores.PUBLIC, "top-level.txt"))
    put(carol.s3, stores.PUBLIC, f"{stores.public_prefix(carol.key)}/mine.txt")


def test_anonymous_requests_are_refused_even_on_public(config: S3Config,
                                                       world: dict[str, object]) -> None:
    anonymous = Minio(config.endpoint.split("://", 1)[1], secure=False, region=config.region)
    denied(lambda: list(anonymous.list_objects(stores.PUBLIC)))
    denied(lambda: list(anonymous.list_objects(person(world, "alice").bucket)))


def test_users_cannot_touch_platform_buckets_or_make_their_own(stack: Context,
                                                               world: dict[str, object]) -> None:
    alice = person(world, "alice")
    for bucket in stack.settings.buckets:
        denied(lambda b=bucket: list(alice.s3.list_objects(b)))
    # Role `user`: no bucket squatting (someone's future user- or team- name).
    denied(lambda: alice.s3.make_bucket(f"team-squat-{uuid.uuid4().hex[:8]}"))


def test_provisioning_twice_changes_nothing(gateway: Gateway, world: dict[str, object]) -> None:
    alice = person(world, "alice")
    team_a, _ = world["teams"]  # type: ignore[misc]
    before = (gateway.accounts()[alice.key], gateway.policy(str(world["team_a"])),
              gateway.policy(stores.PUBLIC))
    again = stores.ensure(gateway, alice.name, [team_a])
    assert again.changes == []
    assert [s.ref for s in again.stores] == [s.ref for s in alice.outcome.stores]
    assert again.stores[0].secret == alice.outcome.stores[0].secret
    after = (gateway.accounts()[alice.key], gateway.policy(str(world["team_a"])),
             gateway.policy(stores.PUBLIC))
    assert after == before
    # And the first call did make everything (this is not a no-op by doing nothing ever).
    assert any(c.startswith("created account") for c in alice.outcome.changes)


def test_leaving_a_team_takes_the_keys_out(gateway: Gateway, world: dict[str, object]) -> None:
    suffix = uuid.uuid4().hex[:8]
    team = f"leavers-{suffix}"
    name = f"st-dave-{suffix}"
    first = stores.ensure(gateway, name, [team])
    secret = first.stores[0].secret
    assert secret is not None
    cfg = gateway.config
    dave = minio_client(cfg.endpoint, secret["access_key"], secret["secret_key"], cfg.region)
    put(dave, stores.team_bucket(team), "x.txt")
    left = stores.ensure(gateway, name, [])
    assert f"removed {stores.access_key(name)} from {stores.team_bucket(team)}" in left.changes
    denied(lambda: get(dave, stores.team_bucket(team), "x.txt"))
    assert [s.ref for s in left.stores] == [f"data_source/{stores.user_bucket(name)}",
                                            "data_source/public"]
    purge(gateway, [name], [team])
