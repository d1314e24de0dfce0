"""The certificate Traefik serves on the one public address.

``skiff init`` makes a local certificate authority once (``certs/ca.crt``, kept
afterwards, so a browser or system that trusts it keeps trusting the platform)
and, signed by it, a server certificate for ``PUBLIC_HOST`` plus ``localhost``
and ``127.0.0.1`` (``certs/skiff.crt``). The server certificate is made again
only when it no longer fits: another ``PUBLIC_HOST``, close to expiry, or signed
by another CA. Someone with a real certificate sets ``TLS_CERT_FILE`` and
``TLS_KEY_FILE`` instead; then nothing is generated and both files must exist.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from skiff.files import PRIVATE, write_atomically
from skiff.settings import Settings

CA_DAYS = 3650
# Apple's clients refuse server certificates valid for more than 825 days, even
# from a CA the user added; we renew well before the end anyway.
SERVER_DAYS = 825
RENEW_BEFORE = dt.timedelta(days=30)
ALWAYS_NAMES = ("localhost", "127.0.0.1")


class TlsError(RuntimeError):
    """The configured certificate cannot be used; the message says which file and why."""


@dataclass(frozen=True)
class TlsFiles:
    """What Traefik serves, and what changed in this call."""

    cert: Path
    key: Path
    # The local CA clients must trust; None for a provided certificate.
    ca: Path | None
    generated: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if self.ca is None:
            return f"TLS: serving the provided certificate {self.cert}"
        if self.generated:
            return (f"TLS: generated {', '.join(self.generated)} in {self.cert.parent}; "
                    f"trust {self.ca} in your browser")
        return f"TLS: keeping {self.cert} (local CA {self.ca})"


def ensure(root: Path, settings: Settings, now: dt.datetime | None = None) -> TlsFiles:
    """The certificate and key to serve, generated under ``root/certs`` unless provided."""
    if settings.tls_cert_file or settings.tls_key_file:
        return _provided(settings, root)
    return ensure_generated(root / "certs", server_names(settings.public_host), now)


def server_names(public_host: str) -> list[str]:
    names = [public_host, *ALWAYS_NAMES]
    return list(dict.fromkeys(n.strip().lower() for n in names if n.strip()))


def _provided(settings: Settings, root: Path) -> TlsFiles:
    if not (settings.tls_cert_file and settings.tls_key_file):
        raise TlsError("TLS_CERT_FILE and TLS_KEY_FILE go together: set both in .env "
                       "(or neither, to use the certificate `skiff init` generates)")
    cert, key = settings.tls_files(root)
    missing = [f"{var}={path}" for var, path in (("TLS_CERT_FILE", cert), ("TLS_KEY_FILE", key))
               if not path.is_file()]
    if missing:
        raise TlsError(f"{' and '.join(missing)}: no such file; fix the path in .env, or empty "
                       "both to use the certificate `skiff init` generates in certs/")
    try:
        x509.load_pem_x509_certificate(cert.read_bytes())
    except ValueError as exc:
        raise TlsError(f"TLS_CERT_FILE={cert} is not a PEM certificate: {exc}") from None
    return TlsFiles(cert=cert, key=key, ca=None)


def ensure_generated(folder: Path, names: list[str], now: dt.datetime | None = None) -> TlsFiles:
    """Keep or make the local CA and a server certificate for ``names`` in ``folder``."""
    now = now or dt.datetime.now(dt.UTC)
    folder.mkdir(parents=True, exist_ok=True)
    ca_crt, ca_key = folder / "ca.crt", folder / "ca.key"
    crt, key = folder / "skiff.crt", folder / "skiff.key"
    generated: list[str] = []

    if ca_crt.is_file() and ca_key.is_file():
        ca_cert = x509.load_pem_x509_certificate(ca_crt.read_bytes())
        ca_private = serialization.load_pem_private_key(ca_key.read_bytes(), password=None)
    else:
        ca_cert, ca_private = _make_ca(now)
        _write_key(ca_key, ca_private)
        write_atomically(ca_crt, ca_cert.public_bytes(serialization.Encoding.PEM))
        generated.append(ca_crt.name)

    if not _server_fits(crt, key, ca_cert, names, now):
        server_cert, server_key = _make_server(ca_cert, ca_private, names, now)
        _write_key(key, server_key)
        # The chain Traefik sends: ours, then the CA's (clients that already trust
        # the CA ignore the second one).
        write_atomically(crt, server_cert.public_bytes(serialization.Encoding.PEM)
               + ca_cert.public_bytes(serialization.Encoding.PEM))
        generated.append(crt.name)
    return TlsFiles(cert=crt, key=key, ca=ca_crt, generated=generated)


def _server_fits(crt: Path, key: Path, ca: x509.Certificate, names: list[str],
                 now: dt.datetime) -> bool:
    if not (crt.is_file() and key.is_file()):
        return False
    cert = x509.load_pem_x509_certificate(crt.read_bytes())
    private = serialization.load_pem_private_key(key.read_bytes(), password=None)
    # An install interrupted between the two writes leaves a key of another certificate.
    same_key = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) == cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return same_key and fits(cert, ca, names, now)


def fits(cert: x509.Certificate, ca: x509.Certificate, names: list[str], now: dt.datetime) -> bool:
    """Whether ``cert`` is ca's, covers every name and has time left."""
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    if cert.not_valid_after_utc - now < RENEW_BEFORE:
        return False
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    covered = {n.lower() for n in san.get_values_for_type(x509.DNSName)}
    covered |= {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    return all(_normal(n) in covered for n in names)


def _normal(name: str) -> str:
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name.lower()


def _san(names: list[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def _make_ca(now: dt.datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    private = ec.generate_private_key(ec.SECP256R1())
    # The machine's name in the CA's: several Skiff installs trusted by one browser
    # stay apart in its certificate list.
    subject = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Skiff"),
        x509.NameAttribute(NameOID.COMMON_NAME, f"Skiff local CA ({socket.gethostname()[:40]})"),
    ])
    public = private.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(private, hashes.SHA256())
    )
    return cert, private


def _make_server(ca: x509.Certificate, ca_key: object, names: list[str],
                 now: dt.datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    private = ec.generate_private_key(ec.SECP256R1())
    public = private.public_key()
    ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Skiff"),
            x509.NameAttribute(NameOID.COMMON_NAME, names[0]),
        ]))
        .issuer_name(ca.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(min(now + dt.timedelta(days=SERVER_DAYS), ca.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=False, crl_sign=False, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(_san(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                       critical=False)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return cert, private


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    write_atomically(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()), mode=PRIVATE)
