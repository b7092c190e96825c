"""A fresh certificate authority per run and a server certificate for 127.0.0.1 signed by it.

With --state-dir the CAs are kept across restarts; a restart signs a new server certificate with the
kept CA when the names asked for changed or the old one nears its end.

Clients verify the server against this CA (no `insecure-skip-tls-verify`), as against a real cluster.
A listener may also have a client CA (RKE2 keeps one beside its server CA): a client certificate it
signed authenticates as its CN (user) and O (groups), as kube-apiserver's x509 authenticator does.
"""
from __future__ import annotations

import ctypes
import dataclasses
import datetime as dt
import ipaddress
import logging
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TlsMaterial:
    ca_cert_pem: bytes
    server_cert_pem: bytes
    server_key_pem: bytes
    client_ca_cert_pem: bytes = b""       # empty: this listener takes no client certificates
    client_ca_key_pem: bytes = b""
    ca_key_pem: bytes = b""               # kept so a restarted server can sign a new certificate (--state-dir)

    def to_json(self) -> dict[str, str]:
        return {name: value.decode() for name, value in vars(self).items()}

    @classmethod
    def from_json(cls, data: dict[str, str]) -> "TlsMaterial":
        return cls(**{name: str(data.get(name, "")).encode() for name in cls.__dataclass_fields__})

    def write(self, directory: Path) -> tuple[Path, Path, Path]:
        directory.mkdir(parents=True, exist_ok=True)
        ca, cert, key = directory / "ca.crt", directory / "server.crt", directory / "server.key"
        ca.write_bytes(self.ca_cert_pem)
        cert.write_bytes(self.server_cert_pem)
        key.touch(mode=0o600)
        key.write_bytes(self.server_key_pem)
        return ca, cert, key


def _name(common_name: str, organizations: tuple[str, ...] = ()) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
    return x509.Name([*attributes, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _make_ca(common_name: str, now: dt.datetime, days: int) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _alt_names(hosts: tuple[str, ...]) -> list[x509.GeneralName]:
    alt_names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt_names.append(x509.DNSName(host))
    return alt_names


def _server_certificate(ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, hosts: tuple[str, ...],
                        server_name: str, now: dt.datetime, days: int) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(server_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(_alt_names(hosts)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


def make_tls_material(hosts: tuple[str, ...] = ("127.0.0.1", "localhost"), days: int = 7, *,
                      ca_name: str = "harvester-simulator-ca", server_name: str = "kube-apiserver",
                      client_ca_name: str = "", ca_days: int | None = None) -> TlsMaterial:
    """A server CA and certificate; with `client_ca_name`, also a client CA for x509 logins.

    The certificate is valid `days`, the CAs `ca_days` (default: as long)."""
    now = dt.datetime.now(dt.timezone.utc)
    ca_cert, ca_key = _make_ca(ca_name, now, ca_days or days)
    cert_pem, key_pem = _server_certificate(ca_cert, ca_key, hosts, server_name, now, days)
    client_ca_pem = client_ca_key_pem = b""
    if client_ca_name:
        client_ca, client_key = _make_ca(client_ca_name, now, ca_days or days)
        client_ca_pem = client_ca.public_bytes(serialization.Encoding.PEM)
        client_ca_key_pem = _pem_key(client_key)
    return TlsMaterial(
        ca_cert_pem=ca_cert.public_bytes(serialization.Encoding.PEM),
        server_cert_pem=cert_pem,
        server_key_pem=key_pem,
        client_ca_cert_pem=client_ca_pem,
        client_ca_key_pem=client_ca_key_pem,
        ca_key_pem=_pem_key(ca_key),
    )


def server_certificate_shortfalls(material: TlsMaterial, hosts: tuple[str, ...], renew_within_days: int) -> list[str]:
    """Why the server certificate will not do for these hosts (empty: it will): missing names, expiry."""
    cert = x509.load_pem_x509_certificate(material.server_cert_pem)
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        sans = x509.SubjectAlternativeName([])
    have = {str(a) for a in sans.get_values_for_type(x509.IPAddress)} | set(sans.get_values_for_type(x509.DNSName))
    shortfalls = [f"does not name {host}" for host in dict.fromkeys(hosts)
                  if (str(ipaddress.ip_address(host)) if _is_ip(host) else host) not in have]
    if cert.not_valid_after_utc - dt.datetime.now(dt.timezone.utc) < dt.timedelta(days=renew_within_days):
        shortfalls.append(f"expires {cert.not_valid_after_utc:%Y-%m-%d}")
    return shortfalls


def reissue_server_certificate(material: TlsMaterial, hosts: tuple[str, ...], days: int) -> TlsMaterial:
    """A new server certificate from the same CA (as RKE2 renews its own on restart): clients that trust
    the CA keep verifying. Needs the CA key (`ca_key_pem`)."""
    ca_cert = x509.load_pem_x509_certificate(material.ca_cert_pem)
    ca_key = serialization.load_pem_private_key(material.ca_key_pem, password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    old = x509.load_pem_x509_certificate(material.server_cert_pem)
    names = old.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    server_name = str(names[0].value) if names else "kube-apiserver"
    cert_pem, key_pem = _server_certificate(ca_cert, ca_key, hosts, server_name, dt.datetime.now(dt.timezone.utc),
                                            days)
    return dataclasses.replace(material, server_cert_pem=cert_pem, server_key_pem=key_pem)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def make_client_certificate(ca_cert_pem: bytes, ca_key_pem: bytes, common_name: str,
                            organizations: tuple[str, ...] = (), days: int = 7) -> tuple[bytes, bytes]:
    """A client certificate (PEM cert, PEM key) signed by that CA, as RKE2 issues its admin cert."""
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    ca_key = serialization.load_pem_private_key(ca_key_pem, password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    now = dt.datetime.now(dt.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, organizations))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True, content_commitment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


# --- asking for client certificates without refusing the handshake ------------------------------------
# kube-apiserver asks for a client certificate (Go's tls.RequestClientCert) and judges it afterwards in
# its x509 authenticator, so a certificate from an unknown CA gets 401, not a TLS alert. Python's ssl
# module can only verify during the handshake (CERT_OPTIONAL fails it), so the context gets an OpenSSL
# verify callback that accepts every chain; `client_certificate_identity` then does the verification.
_SSL_VERIFY_PEER = 0x01
_VERIFY_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p)
_accept_any = _VERIFY_CALLBACK(lambda preverify_ok, store_ctx: 1)   # module-level: must outlive contexts


def _ssl_ctx_pointer(context: ssl.SSLContext) -> int | None:
    """The SSL_CTX* inside an ssl.SSLContext (CPython keeps it right after the object header)."""
    return ctypes.c_void_p.from_address(id(context) + 2 * ctypes.sizeof(ctypes.c_ssize_t)).value


def _request_client_certificates(context: ssl.SSLContext) -> bool:
    try:
        import _ssl

        libssl = ctypes.CDLL(_ssl.__file__)
        libssl.SSL_CTX_get_verify_mode.restype = ctypes.c_int
        libssl.SSL_CTX_get_verify_mode.argtypes = [ctypes.c_void_p]
        libssl.SSL_CTX_set_verify.restype = None
        libssl.SSL_CTX_set_verify.argtypes = [ctypes.c_void_p, ctypes.c_int, _VERIFY_CALLBACK]
    except (OSError, AttributeError, ImportError):
        return False
    context.verify_mode = ssl.CERT_OPTIONAL
    pointer = _ssl_ctx_pointer(context)
    if not pointer or libssl.SSL_CTX_get_verify_mode(pointer) != _SSL_VERIFY_PEER:
        return False            # not the layout expected: keep CERT_OPTIONAL (unknown CAs fail the handshake)
    libssl.SSL_CTX_set_verify(pointer, _SSL_VERIFY_PEER, _accept_any)
    return True


def server_ssl_context(material: TlsMaterial) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    with tempfile.TemporaryDirectory() as tmp:
        ca, cert, key = material.write(Path(tmp))
        context.load_cert_chain(cert, key)
        if material.client_ca_cert_pem:
            client_ca = Path(tmp) / "client-ca.crt"
            client_ca.write_bytes(material.client_ca_cert_pem)
            context.load_verify_locations(client_ca)
    if material.client_ca_cert_pem and not _request_client_certificates(context):
        log.warning("client certificates from unknown CAs will fail the TLS handshake instead of getting 401")
    return context


@dataclass(frozen=True)
class CertificateIdentity:
    user: str
    groups: tuple[str, ...]


def client_certificate_identity(ssl_object: Any, material: TlsMaterial) -> CertificateIdentity | None:
    """The user a verified client certificate names, or None (no certificate, or not from the client CA).

    As kube-apiserver's x509 authenticator: the chain must end at the client CA, the certificate must
    be within its validity and allow client authentication; user = CN, groups = O.
    """
    if ssl_object is None or not material.client_ca_cert_pem:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return None
    try:
        cert = x509.load_der_x509_certificate(der)
        ca = x509.load_pem_x509_certificate(material.client_ca_cert_pem)
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return None
    now = dt.datetime.now(dt.timezone.utc)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        return None
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if ExtendedKeyUsageOID.CLIENT_AUTH not in usages and ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in usages:
            return None
    except x509.ExtensionNotFound:
        pass
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names:
        return None
    groups = tuple(str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME))
    return CertificateIdentity(str(names[0].value), groups)
