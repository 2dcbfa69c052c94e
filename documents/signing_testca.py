"""A self-signed TEST certificate authority and signers' certificates, for the demo and tests.

Never for real minutes: real signers use the certificates their authority issued (in
Việt Nam, the government's official-duty CA on a USB token), and the server trusts that
authority's certificate (docs/operations.md, "Signed minutes"). Nothing made here is
committed: the demo makes it under its data directory at first start.

    python -m documents.signing_testca OUT_DIR "Nguyễn Văn A" "Trần Thị B"

writes OUT_DIR/ca.pem (the trust anchor to configure) and OUT_DIR/<n>.p12 per name, with
their passwords in OUT_DIR/passwords.txt (mode 0600).
"""

from __future__ import annotations

import secrets
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


@dataclass
class SigningCA:
    key: PrivateKey = field(repr=False)
    cert: x509.Certificate

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Hopso TEST CA (not real)"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_ca(common_name: str = "Hopso TEST CA", *, days: int = 3650) -> SigningCA:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(common_name))
            .issuer_name(_name(common_name)).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True, crl_sign=True,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return SigningCA(key, cert)


def issue(ca: SigningCA, common_name: str, public_key: PublicKey, *,
          not_before: datetime | None = None, not_after: datetime | None = None) -> x509.Certificate:
    """A signer's certificate (digital signature, non-repudiation) for `public_key`."""
    now = datetime.now(UTC)
    start = not_before or now - timedelta(days=1)
    return (x509.CertificateBuilder().subject_name(_name(common_name))
            .issuer_name(ca.cert.subject).public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(not_after or now + timedelta(days=3 * 365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=True,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca.key.public_key()), critical=False)
            .sign(ca.key, hashes.SHA256()))


def pkcs12_for(ca: SigningCA, common_name: str, password: str, *,
               not_before: datetime | None = None, not_after: datetime | None = None) -> bytes:
    """A PKCS#12 file (key, certificate and the CA's) for a new signer."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = issue(ca, common_name, key.public_key(), not_before=not_before, not_after=not_after)
    return pkcs12.serialize_key_and_certificates(
        common_name.encode("utf-8"), key, cert, [ca.cert],
        serialization.BestAvailableEncryption(password.encode("utf-8")))


def write_demo(out: Path, names: list[str]) -> dict[str, tuple[Path, str]]:
    """The CA (ca.pem) and one PKCS#12 per name in `out`; returns name → (file, password)."""
    out.mkdir(parents=True, exist_ok=True)
    ca = make_ca()
    (out / "ca.pem").write_bytes(ca.pem)
    made: dict[str, tuple[Path, str]] = {}
    lines = []
    for n, name in enumerate(names, 1):
        password = secrets.token_urlsafe(9)
        path = out / f"{n}.p12"
        path.write_bytes(pkcs12_for(ca, name, password))
        path.chmod(0o600)
        made[name] = (path, password)
        lines.append(f"{path.name}\t{password}\t{name}")
    secret = out / "passwords.txt"
    secret.write_text("\n".join(lines) + "\n", encoding="utf-8")
    secret.chmod(0o600)
    return made


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    for who, (file, _) in write_demo(Path(sys.argv[1]), sys.argv[2:]).items():
        print(f"{file}: {who}")
    print(f"{Path(sys.argv[1]) / 'ca.pem'}: the TEST trust anchor; passwords in passwords.txt")
