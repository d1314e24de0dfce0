"""Attacks with the S3 keys user code holds: each refused by the component itself.

User code (a notebook server, a pipeline node) holds its person's own S3 keys,
which the catalog hands out (``GET /api/v1/users/NAME/s3``, what the hub asks at
each spawn and the pipeline runner for each node). Here alice, a data scientist,
tries with hers what a curious notebook would; every refusal is the S3 gateway's
``AccessDenied`` or the catalog's 403, and the same call with the owner's keys
succeeds, so a refusal is never an error of the test's own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest
from minio import Minio

from serving.catalog import stores
from serving.catalog.s3gateway import minio_client
from skiff import keycloak
from skiff.events.context import notebook_run
from skiff.native.context import Context
from skiff.pipelines.defaults import PIPELINES_BUCKET
from skiff.pipelines.spec import dag_namespace
from skiff.services import catalog
from tests.catalog import people as people_mod
from tests.catalog.stores_support import denied, get, put

pytestmark = pytest.mark.integration

EVENTS_BUCKET = "events"


@pytest.fixture(scope="module")
def people(stack: Context) -> Iterator[people_mod.People]:
    with people_mod.created(stack, "sec") as made:
        yield made


def keys_answer(stack: Context, name: str, token: str) -> httpx.Response:
    return httpx.get(f"{catalog.internal_url(stack.settings)}/api/v1/users/{name}/s3",
                     headers={"Authorization": f"Bearer {token}"}, timeout=60)


@pytest.fixture(scope="module")
def s3_of(stack: Context, people: people_mod.People) -> Callable[[str], Minio]:
    """``s3_of("alice")``: a client with the keys alice's notebook server gets."""
    made: dict[str, Minio] = {}

    def client(who: str) -> Minio:
        if who not in made:
            answer = keys_answer(stack, people.names[who], people.token(who))
            assert answer.status_code == 200, answer.text
            keys = answer.json()
            assert keys["access_key"] == stores.access_key(people.names[who])
            made[who] = minio_client(keys["endpoint"], keys["access_key"], keys["secret_key"],
                                     keys["region"])
        return made[who]

    return client


def test_notebook_keys_are_the_persons_own_not_the_platforms(
        stack: Context, s3_of: Callable[[str], Minio]) -> None:
    alice = s3_of("alice")
    assert alice._provider is not None
    assert alice._provider.retrieve().access_key != stack.settings.s3_access_key
    for bucket in stack.settings.buckets:
        denied(lambda b=bucket: list(alice.list_objects(b)))


def test_another_persons_bucket_is_refused(people: people_mod.People,
                                          s3_of: Callable[[str], Minio]) -> None:
    bobs = stores.user_bucket(people.names["bob"])
    put(s3_of("bob"), bobs, "notes.csv")
    assert get(s3_of("bob"), bobs, "notes.csv") == b"data"
    alice = s3_of("alice")
    denied(lambda: get(alice, bobs, "notes.csv"))
    denied(lambda: list(alice.list_objects(bobs)))
    denied(lambda: put(alice, bobs, "planted.csv"))


def test_another_persons_pipeline_files_are_refused(people: people_mod.People,
                                                   s3_of: Callable[[str], Minio]) -> None:
    bobs = f"{dag_namespace(people.names['bob'])}forecast/submission/train.tar.gz"
    put(s3_of("bob"), PIPELINES_BUCKET, bobs)
    alice = s3_of("alice")
    denied(lambda: get(alice, PIPELINES_BUCKET, bobs))
    denied(lambda: put(alice, PIPELINES_BUCKET, bobs))
    denied(lambda: list(alice.list_objects(PIPELINES_BUCKET, prefix=dag_namespace(people.names["bob"]))))
    # Her own pipelines' files she writes (Elyra uploads them from her server).
    put(alice, PIPELINES_BUCKET, f"{dag_namespace(people.names['alice'])}forecast/s/train.tar.gz")


def test_files_of_another_persons_runs_are_refused(people: people_mod.People,
                                                  s3_of: Callable[[str], Minio]) -> None:
    alice = s3_of("alice")
    put(alice, EVENTS_BUCKET, f"{notebook_run(people.names['alice'], 'r1')}/e1/plot.png")
    # Writing into bob's run would put her picture on his run's page.
    denied(lambda: put(alice, EVENTS_BUCKET, f"{notebook_run(people.names['bob'], 'r1')}/e1/plot.png"))
    denied(lambda: put(alice, EVENTS_BUCKET, f"{dag_namespace(people.names['bob'])}p/run/e/f.bin"))
    # Not even her own events' files are read back with the keys: the console serves them.
    denied(lambda: get(alice, EVENTS_BUCKET, f"{notebook_run(people.names['alice'], 'r1')}/e1/plot.png"))


def test_the_catalog_hands_keys_to_their_owner_and_the_platforms_service_only(
        stack: Context, people: people_mod.People) -> None:
    bob = people.names["bob"]
    refused = keys_answer(stack, bob, people.token("alice"))
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"] == "forbidden"
    assert f"{bob}'s S3 keys are theirs" in refused.json()["message"]
    admin = keycloak.user_token(stack.settings, stack.settings.platform_admin_user,
                                stack.settings.platform_admin_password.get_secret_value())
    assert keys_answer(stack, bob, admin).status_code == 403
    # The pipeline runner, as the platform's service, for a node of bob's pipeline.
    service = keycloak.openid(stack.settings, "airflow", keycloak.client_secret(stack.settings, "airflow")) \
        .token(grant_type="client_credentials")["access_token"]
    given = keys_answer(stack, bob, service)
    assert given.status_code == 200, given.text
    assert given.json()["access_key"] == stores.access_key(bob)
    nobody = keys_answer(stack, f"nobody-{people.suffix}", service)
    assert nobody.status_code == 404 and nobody.json()["error"] == "no_s3_account"
