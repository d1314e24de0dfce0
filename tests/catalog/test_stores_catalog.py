"""Data sources end to end: Keycloak users, the running catalog, the real S3 gateway.

Users get their stores by calling the catalog (``GET /api/v1/me``, what the
portal does at login) or through ``skiff users add``; they fetch their keys
from the catalog and the S3 gateway decides what those keys may do.
Two teams, three users: alice and bob in team A, carol in team B.
"""

from __future__ import annotations

import io
import os
import re
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from keycloak import KeycloakAdmin
from minio import Minio
from minio.error import S3Error

from serving.catalog import stores
from serving.catalog.s3gateway import Gateway, S3Config, minio_client
from serving.portal import catalog as portal_catalog
from skiff import keycloak as kc
from skiff.native.context import Context
from skiff.services.catalog import internal_url
from tests.catalog.stores_support import purge
from tests.integration.test_gateway import browser_login

pytestmark = pytest.mark.integration


class World:
    def __init__(self, ctx: Context, admin: KeycloakAdmin) -> None:
        self.settings = ctx.settings
        self.admin = admin
        self.suffix = uuid.uuid4().hex[:8]
        self.team_a, self.team_b = f"ds-a-{self.suffix}", f"ds-b-{self.suffix}"
        self.users: dict[str, str] = {}
        self.passwords: dict[str, str] = {}
        self.base = f"{internal_url(ctx.settings)}/api/v1"
        s = ctx.settings
        self.s3 = S3Config(s.s3_endpoint, s.s3_access_key, s.s3_secret_key.get_secret_value(),
                           s.s3_region)

    def add(self, who: str, team: str) -> str:
        name = f"ds-{who}-{self.suffix}"
        self.passwords[name] = kc.create_user(self.settings, name, "data-scientist", team,
                                              admin=self.admin)
        self.users[who] = name
        return name

    def token(self, who: str) -> str:
        name = self.users[who]
        return kc.user_token(self.settings, name, self.passwords[name])

    def call(self, method: str, path: str, token: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(method, f"{self.base}{path}", timeout=60,
                             headers={"Authorization": f"Bearer {token}"}, **kwargs)

    def as_user(self, who: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.call(method, path, self.token(who), **kwargs)

    def keys(self, who: str) -> dict[str, str]:
        name = self.users[who]
        # Provisioned on first sight: whichever test runs first, the store exists after this.
        assert self.as_user(who, "GET", "/me").status_code == 200
        resp = self.as_user(who, "GET", f"/assets/data_source/{stores.user_bucket(name)}/credentials")
        assert resp.status_code == 200, resp.text
        secret: dict[str, str] = resp.json()["spec"]["secret"]
        return secret

    def client(self, who: str) -> Minio:
        keys = self.keys(who)
        return minio_client(self.s3.endpoint, keys["access_key"], keys["secret_key"], self.s3.region)


@pytest.fixture(scope="module")
def world(stack: Context) -> Iterator[World]:
    admin = kc.admin_client(stack.settings)
    w = World(stack, admin)
    w.add("alice", w.team_a)
    w.add("bob", w.team_a)
    w.add("carol", w.team_b)
    yield w
    gateway = Gateway(w.s3)
    try:
        for name in w.users.values():
            found = kc.find_user(admin, name)
            if found:
                admin.delete_user(found["id"])
        purge(gateway, w.users.values(), [w.team_a, w.team_b])
        service = kc.service_token(w.settings)
        for bucket in [stores.user_bucket(n) for n in w.users.values()] + \
                [stores.team_bucket(t) for t in (w.team_a, w.team_b)]:
            w.call("DELETE", f"/assets/data_source/{bucket}", service)
        for team in (w.team_a, w.team_b):
            for group in admin.get_groups({"search": team, "exact": True}):
                if group["name"] == team:
                    admin.delete_group(group["id"])
    finally:
        gateway.close()


def put(s3: Minio, bucket: str, key: str, body: bytes = b"data") -> None:
    s3.put_object(bucket, key, io.BytesIO(body), len(body))


def refused(s3: Minio, bucket: str, key: str) -> str:
    with pytest.raises(S3Error) as caught:
        s3.stat_object(bucket, key)
    return str(caught.value.code)


def test_first_call_provisions_and_the_second_does_nothing(world: World) -> None:
    alice = world.users["alice"]
    first = world.as_user("alice", "GET", "/me")
    assert first.status_code == 200, first.text
    assert first.json()["provisioning"] == {"provisioned": True, "data_sources": [
        f"data_source/{stores.user_bucket(alice)}", f"data_source/{stores.team_bucket(world.team_a)}",
        "data_source/public"]}
    again = world.as_user("alice", "GET", "/me")
    assert again.status_code == 200
    assert "provisioning" not in again.json()


def test_stores_are_assets_with_the_access_levels_of_their_buckets(world: World) -> None:
    for who in ("alice", "bob", "carol"):
        assert world.as_user(who, "GET", "/me").status_code == 200
    alice = world.users["alice"]
    mine = world.as_user("alice", "GET", f"/assets/data_source/{stores.user_bucket(alice)}").json()
    assert (mine["owner"], mine["access"], mine["location"]) == \
        (alice, "private", f"s3://{stores.user_bucket(alice)}/")
    assert mine["spec"]["managed"] is True
    assert mine["spec"]["s3"] == {"endpoint": world.s3.endpoint, "bucket": stores.user_bucket(alice),
                                  "region": world.s3.region}
    # The keys are stored, never shown in the asset itself.
    assert mine["spec"]["secret"] == {"stored": True, "fields": ["access_key", "secret_key"]}
    team = f"/assets/data_source/{stores.team_bucket(world.team_a)}"
    assert world.as_user("bob", "GET", team).json()["access"] == "team"
    assert world.as_user("carol", "GET", team).status_code == 404
    assert world.as_user("bob", "GET", f"/assets/data_source/{stores.user_bucket(alice)}").status_code \
        == 404
    assert world.as_user("carol", "GET", "/assets/data_source/public").json()["access"] == "public"


def test_only_the_owner_gets_the_keys(world: World) -> None:
    alice = world.users["alice"]
    keys = world.keys("alice")
    assert keys["access_key"] == stores.access_key(alice)
    assert len(keys["secret_key"]) >= 30
    path = f"/assets/data_source/{stores.user_bucket(alice)}/credentials"
    assert world.as_user("bob", "GET", path).status_code == 404
    team = f"/assets/data_source/{stores.team_bucket(world.team_a)}/credentials"
    assert world.as_user("alice", "GET", team).status_code in (403, 404)


def test_the_s3_server_refuses_one_users_keys_on_another_users_bucket(world: World) -> None:
    alice, bob, carol = world.client("alice"), world.client("bob"), world.client("carol")
    alice_bucket = stores.user_bucket(world.users["alice"])
    team_a = stores.team_bucket(world.team_a)
    put(alice, alice_bucket, "secret.csv")
    put(alice, team_a, "shared.csv")
    put(alice, stores.PUBLIC, f"{stores.public_prefix(stores.access_key(world.users['alice']))}/open.csv")
    assert refused(bob, alice_bucket, "secret.csv") == "AccessDenied"
    assert refused(carol, alice_bucket, "secret.csv") == "AccessDenied"
    assert bob.stat_object(team_a, "shared.csv").size == 4
    assert refused(carol, team_a, "shared.csv") == "AccessDenied"
    assert carol.stat_object(stores.PUBLIC, f"{stores.public_prefix(stores.access_key(world.users['alice']))}"
                                            "/open.csv").size == 4


def test_provisioning_again_through_the_api_changes_nothing(world: World) -> None:
    service = kc.service_token(world.settings)
    alice = world.users["alice"]
    world.as_user("alice", "GET", "/me")
    path = f"/assets/data_source/{stores.user_bucket(alice)}"
    before = world.as_user("alice", "GET", path).json()
    keys_before = world.keys("alice")
    answers = [world.call("POST", f"/users/{alice}/provision", service, json={"teams": [world.team_a]})
               for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200]
    assert answers[0].json()["data_sources"] == answers[1].json()["data_sources"]
    assert world.as_user("alice", "GET", path).json() == before
    assert world.keys("alice") == keys_before


def test_provisioning_is_for_the_service_account_only(world: World) -> None:
    resp = world.as_user("bob", "POST", f"/users/{world.users['bob']}/provision",
                         json={"teams": [world.team_b]})
    assert resp.status_code == 403, resp.text


def test_the_portals_login_call_provisions_a_new_user(world: World) -> None:
    name = world.add("erin", world.team_b)
    assert portal_catalog.announce(internal_url(world.settings), world.token("erin"), name)
    key = stores.access_key(name)
    assert key in Gateway(world.s3).accounts()
    carol_bucket_key = "x.txt"
    put(world.client("carol"), stores.team_bucket(world.team_b), carol_bucket_key)
    assert world.client("erin").stat_object(stores.team_bucket(world.team_b), carol_bucket_key).size == 4


def test_skiff_users_add_creates_the_stores(world: World) -> None:
    name = f"ds-frank-{world.suffix}"
    world.users["frank"] = name
    done = subprocess.run([sys.executable, "-m", "skiff.cli", "users", "add", name, "--team",
                           world.team_a, "--role", "viewer"], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "COLUMNS": "200"}, check=False)
    assert done.returncode == 0, done.stderr
    match = re.search(r"^password: (\S+)$", done.stdout, re.M)
    assert match, done.stdout
    world.passwords[name] = match.group(1)
    assert f"data sources: data_source/{stores.user_bucket(name)}, " \
        f"data_source/{stores.team_bucket(world.team_a)}, data_source/public" in done.stdout
    assert stores.access_key(name) in Gateway(world.s3).accounts()
    # The user's keys are theirs to fetch from the catalog and work on the team's bucket.
    put(world.client("frank"), stores.team_bucket(world.team_a), "from-frank.txt")


def test_signing_in_at_the_portal_provisions_the_user(stack: Context, world: World) -> None:
    name = world.add("gina", world.team_b)
    trust = ssl.create_default_context(cafile=str(stack.root / "certs" / "ca.crt"))
    service = kc.service_token(world.settings)
    path = f"/assets/data_source/{stores.user_bucket(name)}"
    assert world.call("GET", path, service).status_code == 404
    with browser_login(stack, trust, name, world.passwords[name]):
        pass
    # The portal calls the catalog on a thread after the redirect: wait for its effect.
    deadline = time.monotonic() + 60
    while (resp := world.call("GET", path, service)).status_code == 404 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert resp.status_code == 200, resp.text
    assert resp.json()["owner"] == name
    assert stores.access_key(name) in Gateway(world.s3).accounts()
