"""Certificates made at test time (a CA, a server and a client certificate), for real TLS handshakes."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Pem:
    """A certificate and its key, as PEM bytes."""

    cert: bytes
    key: bytes


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _issue(subject: str, issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None, ca: bool,
           server: bool = False) -> tuple[Pem, x509.Name, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(subject)
    issuer_name, issuer_key = issuer if issuer is not None else (name, key)
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    cert = builder.sign(issuer_key, hashes.SHA256())
    pem = Pem(cert.public_bytes(serialization.Encoding.PEM),
              key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()))
    return pem, name, key


@dataclass(frozen=True)
class Authority:
    """A CA with a server and a client certificate it signed, also written to files."""

    ca: Pem
    server: Pem
    client: Pem
    folder: Path

    def path(self, name: str) -> Path:
        """One of ca.pem, server.pem, server.key, client.pem, client.key."""
        return self.folder / name


def make_authority(folder: Path, name: str = "lossd test CA") -> Authority:
    """A fresh CA and the certificates it signs, written under ``folder``."""
    ca, ca_name, ca_key = _issue(name, None, ca=True)
    server, _, _ = _issue("localhost", (ca_name, ca_key), ca=False, server=True)
    client, _, _ = _issue("lossd test client", (ca_name, ca_key), ca=False)
    folder.mkdir(parents=True, exist_ok=True)
    for file, data in (("ca.pem", ca.cert), ("server.pem", server.cert), ("server.key", server.key),
                       ("client.pem", client.cert), ("client.key", client.key)):
        (folder / file).write_bytes(data)
    return Authority(ca, server, client, folder)
