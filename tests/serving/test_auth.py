"""The model API's token check, without Keycloak: tokens signed here, keys served here.

A small HTTP server publishes a JWKS the way Keycloak's certs endpoint does, so
the real PyJWKClient fetches, caches and re-fetches it. The validator runs here
as the app runs it (``check(path, Authorization header)``); the app's wiring
(status, JSON error, WWW-Authenticate, open paths) and real Keycloak tokens are
checked on the running model server by tests/integration/test_keycloak.py.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from serving.model_server.api import ApiError
from serving.model_server.auth import OPEN_PATHS, AuthConfig, TokenValidator

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
def validator(jwks: Jwks) -> TokenValidator:
    # No cooldown between key fetches here: the tests rotate keys back to back.
    return TokenValidator(AuthConfig(issuer=ISSUER, jwks_url=jwks.url, audience=AUDIENCE),
                          refresh_cooldown=0)


def token(key: rsa.RSAPrivateKey, kid: str = "k1", *, lifetime: float = 300,
          **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": [AUDIENCE, "account"], "sub": "device-1", "iat": now,
            "exp": now + lifetime, "azp": "bracelet-devices", "typ": "Bearer", **claims}
    return jwt.encode(body, key, algorithm="RS256", headers={"kid": kid})


def bearer(value: str) -> str:
    return f"Bearer {value}"


def refused(validator: TokenValidator, header: str | None, code: str,
            path: str = "/v1/predict") -> str:
    with pytest.raises(ApiError) as caught:
        validator.check(path, header)
    assert (caught.value.status, caught.value.code) == (401, code), caught.value
    return caught.value.message


def test_a_valid_token_passes_with_its_claims(validator: TokenValidator, jwks: Jwks) -> None:
    claims = validator.check("/v1/predict", bearer(token(jwks.keys["k1"])))
    assert claims is not None
    assert claims["azp"] == "bracelet-devices" and AUDIENCE in claims["aud"]


def test_without_a_token_the_api_is_refused_and_says_what_to_send(validator: TokenValidator) -> None:
    assert "Bearer" in refused(validator, None, "missing_token")


@pytest.mark.parametrize("header", ["Basic dXNlcjpwdw==", "Bearer", "Bearer   ", "token abc", ""])
def test_a_header_that_is_not_a_bearer_token_is_refused(validator: TokenValidator,
                                                        header: str) -> None:
    refused(validator, header, "missing_token")


def test_garbage_is_a_malformed_token(validator: TokenValidator) -> None:
    refused(validator, bearer("not.a.jwt"), "malformed_token")


def test_an_expired_token_is_refused(validator: TokenValidator, jwks: Jwks) -> None:
    old = token(jwks.keys["k1"], lifetime=-60)
    refused(validator, bearer(old), "token_expired")


def test_a_verified_token_is_remembered_until_it_expires(validator: TokenValidator, jwks: Jwks,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    value = token(jwks.keys["k1"], lifetime=60)
    lookups: list[str] = []
    real = validator.jwks.get_signing_key
    monkeypatch.setattr(validator.jwks, "get_signing_key", lambda kid: lookups.append(kid) or real(kid))
    first = validator.check("/v1/predict", bearer(value))
    assert validator.check("/v1/predict", bearer(value)) == first
    assert lookups == ["k1"], "the second check of the same token verified it again"
    # Once past exp (and the leeway), the remembered token is refused like any expired one.
    later = time.time() + 60 + 10
    monkeypatch.setattr(time, "time", lambda: later)
    monkeypatch.setattr(jwt.api_jwt, "datetime", _frozen_datetime(later))
    refused(validator, bearer(value), "token_expired")


def _frozen_datetime(at: float) -> Any:
    from datetime import UTC, datetime

    class Frozen(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
            return datetime.fromtimestamp(at, tz or UTC)

    return Frozen


def test_a_token_of_another_issuer_is_refused_before_any_key_lookup(validator: TokenValidator,
                                                                      jwks: Jwks) -> None:
    before = jwks.fetches
    foreign = token(new_key(), kid="elsewhere", iss="https://evil.example.test/realms/skiff")
    assert "evil.example.test" in refused(validator, bearer(foreign), "wrong_issuer")
    # A stranger's token never makes the server call Keycloak.
    assert jwks.fetches == before


def test_a_token_for_another_audience_is_refused(validator: TokenValidator, jwks: Jwks) -> None:
    other = token(jwks.keys["k1"], aud="account")
    assert "model-api" in refused(validator, bearer(other), "wrong_audience")


@pytest.mark.parametrize("typ", ["ID", "Refresh", None])
def test_only_an_access_token_opens_the_api(validator: TokenValidator, jwks: Jwks, typ: str | None) -> None:
    """An ID token (say, one a login to another client left in a browser) is not a pass."""
    other = token(jwks.keys["k1"], typ=typ)
    assert "access token" in refused(validator, bearer(other), "not_an_access_token")


def test_a_token_without_audience_is_refused(validator: TokenValidator, jwks: Jwks) -> None:
    now = int(time.time())
    body = {"iss": ISSUER, "sub": "x", "iat": now, "exp": now + 300}
    bare = jwt.encode(body, jwks.keys["k1"], algorithm="RS256", headers={"kid": "k1"})
    assert "aud" in refused(validator, bearer(bare), "invalid_token")


def test_a_token_signed_by_another_key_under_a_known_kid_is_refused(validator: TokenValidator) -> None:
    forged = token(new_key(), kid="k1")
    refused(validator, bearer(forged), "bad_signature")


def test_an_unknown_kid_refetches_the_keys_once_then_refuses(validator: TokenValidator,
                                                             jwks: Jwks) -> None:
    validator.check("/v1/predict", bearer(token(jwks.keys["k1"])))  # keys now cached
    before = jwks.fetches
    validator.check("/v1/predict", bearer(token(jwks.keys["k1"])))
    assert jwks.fetches == before, "a known key must come from the cache"
    stray = token(new_key(), kid="never-published")
    refused(validator, bearer(stray), "bad_signature")
    assert jwks.fetches == before + 1


def test_a_rotated_key_is_picked_up_without_a_restart(validator: TokenValidator, jwks: Jwks) -> None:
    assert validator.check("/v1/predict", bearer(token(jwks.keys["k1"]))) is not None
    jwks.keys["k2"] = new_key()
    try:
        claims = validator.check("/v1/predict", bearer(token(jwks.keys["k2"], kid="k2")))
        assert claims is not None and claims["sub"] == "device-1"
    finally:
        del jwks.keys["k2"]


def test_unknown_kids_within_the_cooldown_do_not_reach_keycloak(jwks: Jwks) -> None:
    validator = TokenValidator(AuthConfig(issuer=ISSUER, jwks_url=jwks.url), refresh_cooldown=60)
    validator.check("/v1/predict", bearer(token(jwks.keys["k1"])))
    before = jwks.fetches
    for n in range(5):
        refused(validator, bearer(token(new_key(), kid=f"made-up-{n}")), "bad_signature")
    assert jwks.fetches <= before + 1


@pytest.mark.parametrize("alg", ["HS256", "none"])
def test_symmetric_or_unsigned_tokens_are_refused(validator: TokenValidator, alg: str) -> None:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "iat": now, "exp": now + 300}
    if alg == "HS256":
        # An HMAC "signature" under a guessable secret: the algorithm-confusion forgery.
        forged = jwt.encode(body, "a-secret-anyone-could-pick-32-bytes", algorithm="HS256",
                            headers={"kid": "k1"})
    else:
        forged = jwt.encode(body, None, algorithm="none", headers={"kid": "k1"})
    refused(validator, bearer(forged), "bad_signature")


@pytest.mark.parametrize("path", sorted(OPEN_PATHS))
def test_health_and_metrics_need_no_token(validator: TokenValidator, path: str) -> None:
    assert validator.check(path, None) is None


@pytest.mark.parametrize("path", ["/v1/predict", "/v1/feedback", "/openapi.json", "/healthz/x", "/"])
def test_every_other_path_needs_one(validator: TokenValidator, path: str) -> None:
    refused(validator, None, "missing_token", path=path)


def test_unreachable_keys_are_503_not_a_refusal(jwks: Jwks) -> None:
    validator = TokenValidator(AuthConfig(issuer=ISSUER, jwks_url="http://127.0.0.1:9/certs"))
    with pytest.raises(ApiError) as caught:
        validator.check("/v1/predict", bearer(token(jwks.keys["k1"])))
    assert (caught.value.status, caught.value.code) == (503, "keys_unavailable")


def test_the_server_refuses_to_start_without_its_issuer() -> None:
    with pytest.raises(RuntimeError, match="AUTH_ISSUER, AUTH_JWKS_URL"):
        AuthConfig.from_env({})
    config = AuthConfig.from_env({"AUTH_ISSUER": ISSUER, "AUTH_JWKS_URL": "http://kc/certs"})
    assert config.audience == "model-api"
