"""The model API's token check, without Keycloak: tokens signed here, keys served here.

A small HTTP server publishes a JWKS the way Keycloak's certs endpoint does, so
the real PyJWKClient fetches, caches and re-fetches it. The app is the real
Flask app (no background threads). tests/integration/test_keycloak.py checks the
same refusals with tokens from the real Keycloak.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from flask.testing import FlaskClient
from jwt.algorithms import RSAAlgorithm

from serving.model_server.app import create_app
from serving.model_server.auth import AuthConfig, TokenValidator
from serving.model_server.config import Config

pytestmark = pytest.mark.unit

ISSUER = "https://sso.example.test/auth/realms/skiff"
AUDIENCE = "model-api"


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class Jwks:
    """Keycloak's certs endpoint, in miniature: the keys it publishes and its hit count."""

    keys: dict[str, rsa.RSAPrivateKey] = field(default_factory=dict)
    fetches: int = 0
    url: str = ""

    def document(self) -> bytes:
        keys = []
        for kid, key in self.keys.items():
            jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
            keys.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
        return json.dumps({"keys": keys}).encode()


@pytest.fixture(scope="module")
def jwks() -> Iterator[Jwks]:
    state = Jwks(keys={"k1": new_key()})

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.fetches += 1
            body = state.document()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_port}/realms/skiff/protocol/openid-connect/certs"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()


@pytest.fixture
def client(jwks: Jwks, tmp_path: Path) -> FlaskClient:
    validator = TokenValidator(AuthConfig(issuer=ISSUER, jwks_url=jwks.url, audience=AUDIENCE))
    app = create_app(Config(spool_dir=tmp_path / "spool", background=False), validator)
    return app.test_client()


def token(key: rsa.RSAPrivateKey, kid: str = "k1", *, lifetime: float = 300,
          **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": [AUDIENCE, "account"], "sub": "device-1", "iat": now,
            "exp": now + lifetime, "azp": "bracelet-devices", **claims}
    return jwt.encode(body, key, algorithm="RS256", headers={"kid": kid})


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def refused(resp: Any, code: str) -> str:
    assert resp.status_code == 401, resp.get_data(as_text=True)
    assert resp.json["error"]["code"] == code
    assert resp.headers["WWW-Authenticate"].startswith("Bearer ")
    return resp.json["error"]["message"]


def test_a_valid_token_passes(client: FlaskClient, jwks: Jwks) -> None:
    resp = client.get("/openapi.json", headers=bearer(token(jwks.keys["k1"])))
    assert resp.status_code == 200
    assert resp.json["openapi"].startswith("3.")


def test_without_a_token_the_api_is_401_and_says_what_to_send(client: FlaskClient) -> None:
    message = refused(client.post("/v1/predict", json={"age": 50}), "missing_token")
    assert "Bearer" in message


@pytest.mark.parametrize("header", ["Basic dXNlcjpwdw==", "Bearer", "Bearer   ", "token abc"])
def test_a_header_that_is_not_a_bearer_token_is_refused(client: FlaskClient, header: str) -> None:
    refused(client.get("/openapi.json", headers={"Authorization": header}), "missing_token")


def test_garbage_is_a_malformed_token(client: FlaskClient) -> None:
    refused(client.get("/openapi.json", headers=bearer("not.a.jwt")), "malformed_token")


def test_an_expired_token_is_refused(client: FlaskClient, jwks: Jwks) -> None:
    old = token(jwks.keys["k1"], lifetime=-60)
    refused(client.get("/openapi.json", headers=bearer(old)), "token_expired")


def test_a_token_of_another_issuer_is_refused_before_any_key_lookup(client: FlaskClient,
                                                                      jwks: Jwks) -> None:
    before = jwks.fetches
    foreign = token(new_key(), kid="elsewhere", iss="https://evil.example.test/realms/skiff")
    message = refused(client.get("/openapi.json", headers=bearer(foreign)), "wrong_issuer")
    assert "evil.example.test" in message
    # A stranger's token never makes the server call Keycloak.
    assert jwks.fetches == before


def test_a_token_for_another_audience_is_refused(client: FlaskClient, jwks: Jwks) -> None:
    other = token(jwks.keys["k1"], aud="account")
    message = refused(client.get("/openapi.json", headers=bearer(other)), "wrong_audience")
    assert "model-api" in message


def test_a_token_without_audience_is_refused(client: FlaskClient, jwks: Jwks) -> None:
    now = int(time.time())
    body = {"iss": ISSUER, "sub": "x", "iat": now, "exp": now + 300}
    bare = jwt.encode(body, jwks.keys["k1"], algorithm="RS256", headers={"kid": "k1"})
    refused(client.get("/openapi.json", headers=bearer(bare)), "invalid_token")


def test_a_token_signed_by_another_key_under_a_known_kid_is_refused(client: FlaskClient) -> None:
    forged = token(new_key(), kid="k1")
    refused(client.get("/openapi.json", headers=bearer(forged)), "bad_signature")


def test_an_unknown_kid_refetches_the_keys_once_then_refuses(client: FlaskClient, jwks: Jwks) -> None:
    client.get("/openapi.json", headers=bearer(token(jwks.keys["k1"])))  # keys cached
    before = jwks.fetches
    stray = token(new_key(), kid="never-published")
    refused(client.get("/openapi.json", headers=bearer(stray)), "bad_signature")
    assert jwks.fetches == before + 1


def test_a_rotated_key_is_picked_up_without_a_restart(client: FlaskClient, jwks: Jwks) -> None:
    assert client.get("/openapi.json", headers=bearer(token(jwks.keys["k1"]))).status_code == 200
    jwks.keys["k2"] = new_key()
    try:
        resp = client.get("/openapi.json", headers=bearer(token(jwks.keys["k2"], kid="k2")))
        assert resp.status_code == 200
    finally:
        del jwks.keys["k2"]


@pytest.mark.parametrize("alg", ["HS256", "none"])
def test_symmetric_or_unsigned_tokens_are_refused(client: FlaskClient, jwks: Jwks, alg: str) -> None:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "iat": now, "exp": now + 300}
    # The public key's PEM as an HMAC secret: the classic algorithm-confusion forgery.
    if alg == "HS256":
        forged = jwt.encode(body, "k1-public-key-as-secret" * 2, algorithm="HS256",
                            headers={"kid": "k1"})
    else:
        forged = jwt.encode(body, None, algorithm="none", headers={"kid": "k1"})
    refused(client.get("/openapi.json", headers=bearer(forged)), "bad_signature")


@pytest.mark.parametrize("path", ["/healthz", "/metrics"])
def test_health_and_metrics_need_no_token(client: FlaskClient, path: str) -> None:
    assert client.get(path).status_code == 200


def test_readiness_needs_no_token(client: FlaskClient) -> None:
    # 503: no model in this test, but not a 401.
    assert client.get("/readyz").status_code == 503


def test_unreachable_keys_are_503_not_a_refusal(tmp_path: Path, jwks: Jwks) -> None:
    validator = TokenValidator(AuthConfig(issuer=ISSUER, jwks_url="http://127.0.0.1:9/certs"))
    app = create_app(Config(spool_dir=tmp_path / "spool", background=False), validator)
    resp = app.test_client().get("/openapi.json", headers=bearer(token(jwks.keys["k1"])))
    assert resp.status_code == 503
    assert resp.json["error"]["code"] == "keys_unavailable"


def test_the_server_refuses_to_start_without_its_issuer() -> None:
    with pytest.raises(RuntimeError, match="AUTH_ISSUER, AUTH_JWKS_URL"):
        AuthConfig.from_env({})
    config = AuthConfig.from_env({"AUTH_ISSUER": ISSUER, "AUTH_JWKS_URL": "http://kc/certs"})
    assert config.audience == "model-api"
