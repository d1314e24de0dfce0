"""The notification service on the running stack: real Kafka, PostgreSQL, S3, Keycloak, catalog.

Events are sent with skiff.events (Kafka) and read back through the API as real
Keycloak users: a private run is its owner's (and admins'), a workflow's run is
whoever may read the workflow in the catalog. An event sent while the service is
down arrives once it is back; large payloads and images go through S3.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from skiff import events, keycloak
from skiff.events import transport
from skiff.native import launcher
from skiff.native.context import Context
from skiff.native.probes import http_ok
from skiff.pipelines.spec import identifier
from skiff.services import catalog, notifications
from tests.catalog import people as people_mod
from tests.polling import eventually

pytestmark = pytest.mark.skipif(os.environ.get("SKIFF_TEST_MODE") == "compose",
                                reason="native stack tests (they stop and start the service)")

WAIT_S = 60.0


@dataclass
class Caller:
    base: str
    token: str | None
    name: str

    def get(self, path: str, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        headers.update(kw.pop("headers", {}))
        return httpx.get(f"{self.base}{path}", headers=headers, timeout=30, **kw)

    def events(self, run: str, **params: Any) -> httpx.Response:
        return self.get(f"/api/v1/runs/{quote(run, safe='/')}/events", params=params)


@dataclass
class World:
    people: people_mod.People
    alice: Caller
    bob: Caller
    carol: Caller
    admin: Caller
    service: Caller
    anonymous: Caller

    def name(self, stem: str) -> str:
        return f"{stem}-{self.people.suffix}"


def stored(caller: Caller, run: str, count: int, **params: Any) -> list[dict[str, Any]]:
    def check() -> list[dict[str, Any]] | None:
        answer = caller.events(run, **params)
        if answer.status_code == 200 and len(answer.json()["events"]) >= count:
            return list(answer.json()["events"])
        return None
    return list(eventually(check, f"{count} events of {run} for {caller.name}", WAIT_S))


@pytest.fixture(scope="module")
def base(stack: Context) -> str:
    url = notifications.internal_url(stack.settings)
    try:
        http_ok(f"{url}/healthz")
    except Exception as exc:  # any failure means the same: nothing to test
        pytest.fail(f"the notification service does not answer at {url}: {exc}; "
                    "`skiff up notifications`")
    return url


@pytest.fixture(scope="module")
def world(stack: Context, base: str) -> Iterator[World]:
    settings = stack.settings
    with people_mod.created(stack, "ev") as made:
        service_token = keycloak.openid(settings, "airflow", keycloak.client_secret(
            settings, "airflow")).token(grant_type="client_credentials")["access_token"]
        admin_token = keycloak.user_token(settings, settings.platform_admin_user,
                                          settings.platform_admin_password.get_secret_value())
        yield World(
            people=made,
            alice=Caller(base, made.token("alice"), "alice"),
            bob=Caller(base, made.token("bob"), "bob"),
            carol=Caller(base, made.token("carol"), "carol"),
            admin=Caller(base, admin_token, "admin"),
            service=Caller(base, service_token, "service"),
            anonymous=Caller(base, None, "anonymous"),
        )


def register_workflow(stack: Context, world: World, stem: str, access: str) -> str:
    """alice's workflow asset in the catalog (team: her team a); returns its DAG id."""
    dag_id = f"{identifier(world.people.names['alice'])}__{world.name(stem).replace('-', '_')}"
    answer = httpx.post(f"{catalog.internal_url(stack.settings)}/api/v1/assets",
                        headers={"Authorization": f"Bearer {world.alice.token}"}, timeout=30,
                        json={"kind": "workflow", "name": world.name(stem), "access": access,
                              "spec": {"engine": "airflow", "dag_id": dag_id, "uses": []}})
    assert answer.status_code == 201, answer.text
    return dag_id


def run_visible(caller: Caller, run: str) -> bool:
    return run in {r["run"] for r in caller.get("/api/v1/runs", params={"limit": 1000})
                   .json()["runs"]}


def test_a_private_run_is_its_owners_and_the_admins(world: World) -> None:
    alice = world.people.names["alice"]
    run = f"notebook/{alice}/{uuid.uuid4().hex}"
    sent = events.log("step 1 done", run=run, user=alice)
    events.status("success", "all good", run=run, user=alice)
    mine = stored(world.alice, run, 2)
    assert mine[0]["id"] == sent["id"] and mine[0]["data"] == {"text": "step 1 done"}
    assert mine[0]["seq"] < mine[1]["seq"]
    listed = {r["run"]: r for r in world.alice.get("/api/v1/runs").json()["runs"]}
    assert listed[run]["user"] == alice and listed[run]["status"] == "success"
    assert listed[run]["events"] == 2
    for outsider in (world.bob, world.carol):
        answer = outsider.events(run)
        assert answer.status_code == 404 and answer.json()["error"] == "not_found"
        assert not run_visible(outsider, run)
    for insider in (world.admin, world.service):
        assert len(insider.events(run).json()["events"]) == 2
        assert run_visible(insider, run)


def test_a_team_workflows_run_is_its_teams_and_a_public_ones_everyones(
        stack: Context, world: World) -> None:
    team_dag = register_workflow(stack, world, "ev-team", "team")
    public_dag = register_workflow(stack, world, "ev-public", "public")
    team_run, public_run = f"{team_dag}/manual__1", f"{public_dag}/manual__1"
    events.metrics({"loss": 0.5}, step=1, run=team_run, user="airflow", workflow=team_dag)
    events.alert("drift", details={"psi": 0.3}, run=public_run, user="airflow",
                 workflow=public_dag)
    stored(world.admin, team_run, 1)
    stored(world.admin, public_run, 1)
    # bob shares team a with the workflow's owner; carol is in team b.
    assert world.bob.events(team_run).json()["events"][0]["data"] == {"values": {"loss": 0.5},
                                                                      "step": 1}
    assert run_visible(world.bob, team_run)
    assert world.carol.events(team_run).status_code == 404
    assert not run_visible(world.carol, team_run)
    assert world.carol.events(public_run).json()["events"][0]["kind"] == "alert"
    assert run_visible(world.carol, public_run)


def test_kind_filter_and_paging(world: World) -> None:
    alice = world.people.names["alice"]
    run = f"notebook/{alice}/{uuid.uuid4().hex}"
    for i in range(5):
        events.metrics({"i": i}, step=i, run=run, user=alice)
        events.log(f"line {i}", run=run, user=alice)
    stored(world.alice, run, 10)
    logs = world.alice.events(run, kind="log").json()["events"]
    assert [e["data"]["text"] for e in logs] == [f"line {i}" for i in range(5)]
    both = world.alice.events(run, kind="log,metrics").json()["events"]
    assert len(both) == 10
    first = world.alice.events(run, kind="metrics", limit=2).json()
    assert [e["data"]["step"] for e in first["events"]] == [0, 1]
    rest = world.alice.events(run, kind="metrics", limit=2, after=first["next_after"]).json()
    assert [e["data"]["step"] for e in rest["events"]] == [2, 3]
    # Runs page newest first, by their newest event.
    page = world.alice.get("/api/v1/runs", params={"limit": 1}).json()
    assert page["runs"][0]["run"] == run and page["next_before"] is not None
    older = world.alice.get("/api/v1/runs", params={"limit": 1, "before": page["next_before"]})
    assert older.json()["runs"][0]["run"] != run


def test_large_payloads_images_and_files_go_through_s3(world: World) -> None:
    alice = world.people.names["alice"]
    run = f"notebook/{alice}/{uuid.uuid4().hex}"
    big = events.log("x" * 100_000, run=run, user=alice)
    assert "data" not in big and big["link"]["content_type"].startswith("text/plain")
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 64
    picture = events.image(png, title="curve", run=run, user=alice)
    attached = events.file(b"a,b\n1,2\n", name="table.csv", run=run, user=alice)
    stored(world.alice, run, 3)
    text = world.alice.get(f"/api/v1/events/{big['id']}/content")
    assert text.status_code == 200 and text.content == b"x" * 100_000
    image = world.alice.get(f"/api/v1/events/{picture['id']}/content")
    assert image.content == png and image.headers["content-type"] == "image/png"
    assert image.headers["content-disposition"].startswith("inline")
    assert image.headers["x-content-type-options"] == "nosniff"
    download = world.alice.get(f"/api/v1/events/{attached['id']}/content")
    assert download.content == b"a,b\n1,2\n"
    assert download.headers["content-disposition"].startswith('attachment; filename="table.csv"')
    # Not alice's friend: the content is as hidden as the run.
    assert world.carol.get(f"/api/v1/events/{picture['id']}/content").status_code == 404
    # An inline event has no content to serve.
    inline = events.log("short", run=run, user=alice)
    stored(world.alice, run, 4)
    none = world.alice.get(f"/api/v1/events/{inline['id']}/content")
    assert none.status_code == 404 and none.json()["error"] == "no_content"


def test_an_event_linking_another_runs_file_serves_nothing(world: World) -> None:
    """carol's run may not show her readers a file of alice's private run."""
    alice, carol = world.people.names["alice"], world.people.names["carol"]
    private = events.image(b"\x89PNG\r\n\x1a\n" + b"\1" * 64, title="mine",
                           run=f"notebook/{alice}/{uuid.uuid4().hex}", user=alice)
    run = f"notebook/{carol}/{uuid.uuid4().hex}"
    forged = {"id": uuid.uuid4().hex, "time": private["time"], "kind": "image", "run": run,
              "step": "", "user": carol, "workflow": "", "title": "borrowed",
              "link": private["link"]}
    transport.shared().send(forged)
    stored(world.carol, run, 1)
    refused = world.carol.get(f"/api/v1/events/{forged['id']}/content")
    assert refused.status_code == 404, refused.text
    assert refused.json()["error"] == "no_content"
    assert "not its own" in refused.json()["message"]


def test_bad_requests_get_clear_json_errors(world: World) -> None:
    alice = world.people.names["alice"]
    run = f"notebook/{alice}/{uuid.uuid4().hex}"
    events.log("hi", run=run, user=alice)
    stored(world.alice, run, 1)
    no_token = world.anonymous.get("/api/v1/runs")
    assert no_token.status_code == 401 and no_token.json()["error"] == "unauthorized"
    forged = Caller(world.alice.base, "not.a.jwt", "forged").get("/api/v1/runs")
    assert forged.status_code == 401 and forged.json()["error"] == "malformed_token"
    kind = world.alice.events(run, kind="log,bogus")
    assert kind.status_code == 422 and "bogus" in kind.json()["message"]
    after = world.alice.events(run, after="yesterday")
    assert after.status_code == 422 and after.json()["message"].startswith("after:")
    limit = world.alice.events(run, limit=0)
    assert limit.status_code == 422 and "limit" in limit.json()["message"]
    missing = world.alice.events("notebook/nobody/none")
    assert missing.status_code == 404 and "not visible" in missing.json()["message"]
    route = world.alice.get("/api/v2/nothing")
    assert route.status_code == 404 and route.json()["error"] == "not_found"
    assert world.alice.get("/healthz").json()["status"] == "ok"


class Stream:
    """An SSE stream read in a thread: ``events`` fills as they arrive."""

    def __init__(self, caller: Caller, path: str, headers: dict[str, str] | None = None) -> None:
        self.events: list[dict[str, Any]] = []
        self.ids: list[str] = []
        self.status = 0
        self.opened = threading.Event()
        self.stop = False
        self._response: httpx.Response | None = None
        self._thread = threading.Thread(target=self._read, args=(caller, path, headers or {}),
                                        daemon=True)
        self._thread.start()
        assert self.opened.wait(30), f"stream {path} did not open"

    def _read(self, caller: Caller, path: str, headers: dict[str, str]) -> None:
        try:
            with httpx.stream("GET", f"{caller.base}{path}", timeout=httpx.Timeout(30, read=60),
                              headers={"Authorization": f"Bearer {caller.token}", **headers}) as r:
                self.status = r.status_code
                self._response = r
                self.opened.set()
                for line in r.iter_lines():
                    if line.startswith("id: "):
                        self.ids.append(line[4:])
                    elif line.startswith("data: "):
                        self.events.append(json.loads(line[6:]))
        except (httpx.HTTPError, httpx.StreamError):
            if not self.stop:  # closed by close(): expected
                raise

    def wait_for(self, count: int) -> list[dict[str, Any]]:
        return list(eventually(lambda: len(self.events) >= count and self.events,
                               f"{count} streamed events", WAIT_S))

    def finished(self) -> None:
        """Wait for the server to end the stream."""
        self._thread.join(60)
        assert not self._thread.is_alive(), "the stream is still open"

    def close(self) -> None:
        self.stop = True
        if self._response is not None:
            self._response.close()
        self._thread.join(10)


def test_the_live_streams_show_each_caller_what_they_may_see(stack: Context, world: World) -> None:
    alice = world.people.names["alice"]
    private = f"notebook/{alice}/{uuid.uuid4().hex}"
    dag = register_workflow(stack, world, "ev-live", "team")
    team_run = f"{dag}/manual__live"
    # A run's stream may open before its first event (a page opened as the run is
    # triggered): it waits, and that first event decides who sees the run.
    run_stream = Stream(world.alice, f"/api/v1/runs/{private}/stream?after=0")
    snooper = Stream(world.carol, f"/api/v1/runs/{private}/stream?after=0")
    assert run_stream.status == 200 and snooper.status == 200
    first = events.log("private", run=private, user=alice)
    stored(world.alice, private, 1)
    # Carol's stream ends at alice's first event, having shown her nothing.
    snooper.finished()
    assert snooper.events == []
    bobs = Stream(world.bob, "/api/v1/stream")
    try:
        sent = [first, events.status("running", run=team_run, user="airflow", workflow=dag),
                events.log("private again", run=private, user=alice)]
        got = run_stream.wait_for(2)
        assert run_stream.status == 200 and bobs.status == 200
        assert [e["id"] for e in got] == [sent[0]["id"], sent[2]["id"]]
        assert run_stream.ids == [str(e["seq"]) for e in got]
        seen = bobs.wait_for(1)
        assert [e["id"] for e in seen] == [sent[1]["id"]]
    finally:
        run_stream.close()
        bobs.close()
    # Another caller's private run cannot be streamed.
    refused = world.carol.get(f"/api/v1/runs/{private}/stream")
    assert refused.status_code == 404


def test_an_event_sent_while_the_service_is_down_arrives_when_it_is_back(
        stack: Context, world: World) -> None:
    alice = world.people.names["alice"]
    run = f"notebook/{alice}/{uuid.uuid4().hex}"
    events.log("before", run=run, user=alice)
    first = stored(world.alice, run, 1)[0]
    launcher.down(stack, ["notifications"])
    try:
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{world.alice.base}/healthz", timeout=5)
        # Kafka keeps it: emitting does not depend on the service.
        while_down = events.log("while down", run=run, user=alice)
    finally:
        launcher.up(stack, ["notifications"])
    both = stored(world.alice, run, 2)
    assert [e["id"] for e in both] == [first["id"], while_down["id"]]
    # A browser resuming with Last-Event-ID gets what it missed, then the live ones.
    stream = Stream(world.alice, f"/api/v1/runs/{run}/stream",
                    headers={"Last-Event-ID": str(first["seq"])})
    try:
        later = events.log("after", run=run, user=alice)
        got = stream.wait_for(2)
        assert [e["id"] for e in got] == [while_down["id"], later["id"]]
    finally:
        stream.close()


def test_the_api_is_published_under_events_behind_traefik(stack: Context, world: World) -> None:
    import ssl

    trust = ssl.create_default_context(cafile=str(stack.root / "certs" / "ca.crt"))
    public = f"{stack.settings.public_url}/events"
    health = httpx.get(f"{public}/healthz", verify=trust, timeout=10)
    if health.headers.get("content-type") != "application/json":
        pytest.skip("Traefik has not loaded the /events route yet (restart traefik: its "
                    "SKIFF_NOTIFICATIONS_URL upstream is read at start)")
    assert health.json()["status"] == "ok"
    alice = world.people.names["alice"]
    run = f"notebook/{alice}/{uuid.uuid4().hex}"
    events.log("via traefik", run=run, user=alice)
    stored(world.alice, run, 1)
    # An API client's bearer token passes the auth-bearer middleware unchanged.
    answer = httpx.get(f"{public}/api/v1/runs/{run}/events", verify=trust, timeout=30,
                       headers={"Authorization": f"Bearer {world.alice.token}"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["events"][0]["data"]["text"] == "via traefik"
    assert httpx.get(f"{public}/api/v1/runs", verify=trust, timeout=10).status_code == 401
    # Its metrics are not published.
    assert httpx.get(f"{public}/metrics", verify=trust, timeout=10,
                     follow_redirects=False).headers.get("content-type", "") \
        != "text/plain; version=0.0.4; charset=utf-8"
