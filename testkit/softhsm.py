"""SoftHSM2 as a real PKCS#11 token for the signing tests and demos.

`SoftToken.shared()` is this process's one token, in a token store of its own (a temporary
directory, SOFTHSM2_CONF pointing at it). One per process because SoftHSM2 reads its
configuration and finds its tokens once, when the module is first loaded in the process: a
token made after that is invisible to it. Tests tell their keys apart by label; `add_signer` generates an RSA key ON the token (the private key never
leaves it, as on a USB token) and stores beside it a certificate for that key issued by a
test CA, under one label.
"""

from __future__ import annotations

import atexit
import functools
import os
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from documents.signing_testca import SigningCA, issue

MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")
UTIL = "softhsm2-util"


def missing() -> str | None:
    """Why SoftHSM2 cannot be used here (None: it can)."""
    if not MODULE.exists():
        return f"SoftHSM2 is not installed ({MODULE} missing: apt-get install softhsm2)"
    if shutil.which(UTIL) is None:
        return f"SoftHSM2 is not installed ({UTIL} missing: apt-get install softhsm2)"
    return None


@functools.cache
def _store() -> Path:
    store = Path(tempfile.mkdtemp(prefix="hopso-softhsm-"))
    atexit.register(shutil.rmtree, store, ignore_errors=True)
    (store / "tokens").mkdir()
    conf = store / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {store / 'tokens'}\nobjectstore.backend = file\n"
                    "log.level = ERROR\n", encoding="utf-8")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    return store


@dataclass
class SoftToken:
    label: str
    pin: str = field(repr=False)
    module: Path = MODULE

    @classmethod
    @functools.cache
    def shared(cls) -> SoftToken:
        """This process's token (made on first use, before the module is loaded)."""
        return cls._create(f"hopso-{os.getpid()}")

    @classmethod
    def _create(cls, label: str) -> SoftToken:
        _store()
        pin = secrets.token_hex(4)
        subprocess.run([UTIL, "--init-token", "--free", "--label", label,
                        "--so-pin", secrets.token_hex(4), "--pin", pin],
                       check=True, capture_output=True, env={**os.environ})
        return cls(label, pin)

    def add_signer(self, ca: SigningCA, key_label: str, common_name: str, *,
                   not_before: datetime | None = None,
                   not_after: datetime | None = None) -> x509.Certificate:
        import pkcs11
        from pkcs11 import Attribute, KeyType, ObjectClass
        from pkcs11.util.x509 import decode_x509_certificate

        token = pkcs11.lib(str(self.module)).get_token(token_label=self.label)
        with token.open(rw=True, user_pin=self.pin) as session:
            public, _ = session.generate_keypair(KeyType.RSA, 2048, label=key_label, store=True)
            numbers = rsa.RSAPublicNumbers(int.from_bytes(public[Attribute.PUBLIC_EXPONENT]),
                                           int.from_bytes(public[Attribute.MODULUS]))
            cert = issue(ca, common_name, numbers.public_key(), not_before=not_before,
                         not_after=not_after)
            attrs = decode_x509_certificate(cert.public_bytes(serialization.Encoding.DER))
            attrs[Attribute.LABEL] = key_label
            attrs[Attribute.TOKEN] = True
            attrs[Attribute.CLASS] = ObjectClass.CERTIFICATE
            session.create_object(attrs)
        return cert
