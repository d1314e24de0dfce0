"""The certificate `skiff init` generates (or checks) for Traefik."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509

from skiff import tls
from skiff.settings import Settings

pytestmark = pytest.mark.unit


def settings(**values: str) -> Settings:
    # Only the TLS fields matter here; model_construct skips the required secrets.
    return Settings.model_construct(**{"public_host": "localhost", "tls_cert_file": "",
                                       "tls_key_file": "", **values})


def handshake(files: tls.TlsFiles, server_name: str) -> str:
    """A real TLS handshake against the files; returns the peer's common name."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(files.cert, files.key)
    client_ctx = ssl.create_default_context(cafile=str(files.ca))
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as tls_conn:
                tls_conn.recv(1)
        except (ssl.SSLError, OSError):
            pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                client_ctx.wrap_socket(raw, server_hostname=server_name) as conn:
            subject = dict(item[0] for item in conn.getpeercert()["subject"])
            conn.send(b"x")
            return str(subject["commonName"])
    finally:
        thread.join(5)
        listener.close()


def test_init_generates_a_ca_and_a_certificate_clients_trust(tmp_path: Path) -> None:
    files = tls.ensure(tmp_path, settings(public_host="skiff.example.org"))
    assert files.generated == ["ca.crt", "skiff.crt"]
    assert (files.cert, files.key, files.ca) == (
        tmp_path / "certs/skiff.crt", tmp_path / "certs/skiff.key", tmp_path / "certs/ca.crt")
    for name in ("skiff.example.org", "localhost", "127.0.0.1"):
        assert handshake(files, name) == "skiff.example.org"


def test_a_name_not_in_the_certificate_is_refused(tmp_path: Path) -> None:
    files = tls.ensure(tmp_path, settings())
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(files, "elsewhere.example.org")


def test_keys_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    files = tls.ensure(tmp_path, settings())
    for key in (files.key, tmp_path / "certs/ca.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_a_second_init_keeps_everything(tmp_path: Path) -> None:
    tls.ensure(tmp_path, settings())
    before = {p.name: p.read_bytes() for p in (tmp_path / "certs").iterdir()}
    again = tls.ensure(tmp_path, settings())
    assert again.generated == []
    assert {p.name: p.read_bytes() for p in (tmp_path / "certs").iterdir()} == before


def test_another_public_host_renews_the_certificate_but_keeps_the_ca(tmp_path: Path) -> None:
    tls.ensure(tmp_path, settings())
    ca = (tmp_path / "certs/ca.crt").read_bytes()
    files = tls.ensure(tmp_path, settings(public_host="10.1.2.3"))
    assert files.generated == ["skiff.crt"]
    assert (tmp_path / "certs/ca.crt").read_bytes() == ca
    assert handshake(files, "10.1.2.3") == "10.1.2.3"


def test_a_certificate_close_to_expiry_is_renewed(tmp_path: Path) -> None:
    tls.ensure(tmp_path, settings())
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=tls.SERVER_DAYS - 10)
    assert tls.ensure(tmp_path, settings(), now=later).generated == ["skiff.crt"]


def test_a_key_that_does_not_match_the_certificate_is_replaced(tmp_path: Path) -> None:
    tls.ensure(tmp_path, settings())
    # As if an earlier run stopped between writing the new key and the new certificate.
    (tmp_path / "certs/skiff.key").write_bytes((tmp_path / "certs/ca.key").read_bytes())
    files = tls.ensure(tmp_path, settings())
    assert files.generated == ["skiff.crt"]
    assert handshake(files, "localhost") == "localhost"


def test_the_served_chain_holds_the_server_certificate_then_the_ca(tmp_path: Path) -> None:
    files = tls.ensure(tmp_path, settings())
    chain = x509.load_pem_x509_certificates(files.cert.read_bytes())
    ca = x509.load_pem_x509_certificate(files.ca.read_bytes())  # type: ignore[union-attr]
    assert [c.subject for c in chain] == [chain[0].subject, ca.subject]
    chain[0].verify_directly_issued_by(ca)
    assert not chain[0].extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_provided_files_are_used_as_they_are(tmp_path: Path) -> None:
    made = tls.ensure_generated(tmp_path / "mine", ["skiff.example.org"])
    files = tls.ensure(tmp_path, settings(tls_cert_file=str(made.cert), tls_key_file=str(made.key)))
    assert (files.cert, files.key, files.ca, files.generated) == (made.cert, made.key, None, [])
    assert not (tmp_path / "certs").exists()


def test_a_missing_provided_file_is_named(tmp_path: Path) -> None:
    made = tls.ensure_generated(tmp_path / "mine", ["localhost"])
    with pytest.raises(tls.TlsError, match=r"TLS_KEY_FILE=/nowhere/key.pem: no such file"):
        tls.ensure(tmp_path, settings(tls_cert_file=str(made.cert), tls_key_file="/nowhere/key.pem"))


def test_only_one_provided_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(tls.TlsError, match="go together"):
        tls.ensure(tmp_path, settings(tls_cert_file="/some/cert.pem"))


def test_a_provided_file_that_is_no_certificate_is_refused(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text("not a certificate")
    (tmp_path / "key.pem").write_text("not a key")
    with pytest.raises(tls.TlsError, match="not a PEM certificate"):
        tls.ensure(tmp_path, settings(tls_cert_file=str(tmp_path / "cert.pem"),
                                      tls_key_file=str(tmp_path / "key.pem")))


def test_skiff_init_writes_env_and_certificates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from skiff.cli import main
    from skiff.settings import find_root

    root = find_root(Path(__file__).parent)
    for name in (".env.example", "versions.env"):
        (tmp_path / name).write_text((root / name).read_text())
    monkeypatch.chdir(tmp_path)
    for var in ("TLS_CERT_FILE", "TLS_KEY_FILE", "PUBLIC_HOST"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SKIFF_STATE", str(tmp_path / "state"))
    done = CliRunner().invoke(main, ["init"])
    assert done.exit_code == 0, done.output
    assert "generated ca.crt, skiff.crt" in done.output
    assert sorted(p.name for p in (tmp_path / "certs").iterdir()) == [
        "ca.crt", "ca.key", "skiff.crt", "skiff.key"]
    again = CliRunner().invoke(main, ["init"])
    assert "keeping" in again.output
