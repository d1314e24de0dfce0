"""The native Keycloak service without running it: install, home, options, readiness."""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from skiff.envfile import GENERATORS
from skiff.native import installing
from skiff.native.context import Context
from skiff.native.spec import NotReady
from skiff.services import REGISTRY, in_start_order, keycloak, postgres

pytestmark = pytest.mark.unit


@pytest.fixture
def ctx(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Context:
    for name in GENERATORS:
        monkeypatch.setenv(name, f"value-of-{name.lower()}")
    monkeypatch.setenv("PUBLIC_HOST", "sso.example.test")
    monkeypatch.setenv("HTTPS_PORT", "9443")
    monkeypatch.setenv("KEYCLOAK_PORT", "18180")
    return Context(root=root, cache=tmp_path / "cache", state=tmp_path / "state")


def test_keycloak_starts_after_postgres_and_before_what_needs_it() -> None:
    assert REGISTRY["keycloak"].depends_on == ("postgres",)
    order = [s.name for s in in_start_order(["model-server"])]
    assert order.index("postgres") < order.index("keycloak") < order.index("model-server")
    assert "keycloak" in postgres.DATABASES


def test_the_tarball_comes_from_maven_central() -> None:
    assert keycloak.tarball_url("26.7.3") == (
        "https://repo1.maven.org/maven2/org/keycloak/keycloak-quarkus-dist/26.7.3/"
        "keycloak-quarkus-dist-26.7.3.tar.gz")


def test_the_build_bakes_in_postgres_health_and_the_auth_path() -> None:
    assert "--db=postgres" in keycloak.BUILD_OPTIONS
    assert "--health-enabled=true" in keycloak.BUILD_OPTIONS
    assert "--http-relative-path=/auth" in keycloak.BUILD_OPTIONS


def test_it_starts_optimized_and_imports_the_realm(ctx: Context) -> None:
    [program] = keycloak.programs(ctx)
    assert program.command == [str(keycloak.home(ctx) / "bin" / "kc.sh"), "start", "--optimized",
                               "--import-realm"]
    # Secrets travel in the environment, never on the command line (`ps`).
    assert not any("value-of" in arg for arg in program.command)


def test_tokens_name_the_public_issuer_and_back_channel_calls_stay_internal(ctx: Context) -> None:
    [program] = keycloak.programs(ctx)
    env = program.env
    assert env["KC_HOSTNAME"] == "https://sso.example.test:9443/auth"
    assert f"{env['KC_HOSTNAME']}/realms/skiff" == ctx.settings.keycloak_issuer
    assert env["KC_HOSTNAME_BACKCHANNEL_DYNAMIC"] == "true"
    assert env["KC_PROXY_HEADERS"] == "xforwarded"
    assert (env["KC_HTTP_HOST"], env["KC_HTTP_PORT"]) == ("127.0.0.1", "18180")
    assert env["KC_DB_URL"] == "jdbc:postgresql://127.0.0.1:5432/keycloak"
    assert env["KC_DB_PASSWORD"] == "value-of-keycloak_db_password"
    assert env["KC_BOOTSTRAP_ADMIN_PASSWORD"] == "value-of-keycloak_admin_password"
    assert "-Xmx" in env["JAVA_OPTS_KC_HEAP"]
    assert keycloak.jwks_url(ctx) == \
        "http://127.0.0.1:18180/auth/realms/skiff/protocol/openid-connect/certs"


def _fake_dist(ctx: Context) -> Path:
    dist = keycloak.dist(ctx)
    for name in ("bin", "lib", "conf", "themes", "providers"):
        (dist / name).mkdir(parents=True)
    (dist / "bin" / "kc.sh").write_text("#!/bin/sh\n")
    (dist / "version.txt").write_text("26.7.3\n")
    return dist


def test_each_checkout_gets_its_own_home_with_the_realm_to_import(ctx: Context) -> None:
    dist = _fake_dist(ctx)
    keycloak.prepare(ctx)
    keycloak.prepare(ctx)  # again: idempotent
    home = keycloak.home(ctx)
    assert home.is_relative_to(ctx.state)
    # kc.sh finds its home from its own path: a copy, not a link into the cache.
    assert not (home / "bin" / "kc.sh").is_symlink() and (home / "bin" / "kc.sh").is_file()
    assert (home / "lib").resolve() == (dist / "lib").resolve()
    imported = home / "data" / "import" / keycloak.REALM_FILE
    assert imported.read_text() == ctx.compose_file("keycloak", keycloak.REALM_FILE).read_text()


class _Tarball:
    """Maven Central in miniature: the tarball and its .sha1, and what was asked."""

    def __init__(self, payload: bytes, sha1: str) -> None:
        self.payload, self.sha1 = payload, sha1
        self.asked: list[str] = []
        self.url = ""

    def serve(self) -> tuple[ThreadingHTTPServer, str]:
        files = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                files.asked.append(self.path)
                body = files.sha1.encode() if self.path.endswith(".sha1") else files.payload
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server, f"http://127.0.0.1:{server.server_port}/kc.tar.gz"


def _tarball() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = b"#!/bin/sh\necho kc\n"
        info = tarfile.TarInfo("keycloak-26.7.3/bin/kc.sh")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def central() -> Iterator[_Tarball]:
    payload = _tarball()
    files = _Tarball(payload, hashlib.sha1(payload).hexdigest() + "  kc.tar.gz\n")
    server, files.url = files.serve()
    yield files
    server.shutdown()


def test_download_checks_the_sha1_and_is_done_once(central: _Tarball, tmp_path: Path) -> None:
    url = central.url
    dest = tmp_path / "downloads" / "kc.tar.gz"
    assert installing.download("keycloak", url, dest, sha1_url=url + ".sha1") == dest
    assert dest.read_bytes() == central.payload
    asked = len(central.asked)
    installing.download("keycloak", url, dest, sha1_url=url + ".sha1")
    assert len(central.asked) == asked, "a finished download is not fetched again"


def test_a_corrupt_download_is_refused_and_not_kept(central: _Tarball, tmp_path: Path) -> None:
    central.sha1 = "0" * 40
    url = central.url
    dest = tmp_path / "kc.tar.gz"
    with pytest.raises(installing.InstallError, match="SHA-1"):
        installing.download("keycloak", url, dest, sha1_url=url + ".sha1")
    assert list(tmp_path.iterdir()) == []


def test_unpacking_drops_the_top_folder_and_keeps_modes(tmp_path: Path) -> None:
    tarball = tmp_path / "kc.tar.gz"
    tarball.write_bytes(_tarball())
    dest = tmp_path / "components" / "keycloak-26.7.3"
    keycloak._unpack(tarball, dest)
    script = dest / "bin" / "kc.sh"
    assert script.read_text().startswith("#!/bin/sh") and script.stat().st_mode & 0o111


def test_not_ready_until_the_realm_answers(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx

    answers = {"health/ready": 200, ".well-known": 404}

    def get(url: str, **kwargs: object) -> httpx.Response:
        assert url.startswith(("http://127.0.0.1:9180/auth/", "http://127.0.0.1:18180/auth/")), url
        return httpx.Response(next(code for part, code in answers.items() if part in url))

    monkeypatch.setattr(httpx, "get", get)
    with pytest.raises(NotReady, match="realm 'skiff'"):
        keycloak.ready(ctx)
    answers[".well-known"] = 200
    keycloak.ready(ctx)
