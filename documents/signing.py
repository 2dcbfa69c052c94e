"""PAdES signatures on generated PDFs (the minutes, and any other PDF Hopso typesets).

Each signature is an incremental update appended to the exact bytes it is given, so an
earlier signature still covers its own revision and verifies after a later one is added.
Keys come from a PKCS#12 file (bytes and password, used once and dropped) or from a
PKCS#11 token (module, token label, key label, PIN); the signer's certificate must be
within its validity period and chain to one of the configured trust anchors, checked
before anything is signed.

Everything here blocks (crypto, PDF parsing, a token's round trips): callers run it in a
thread. Never in the documents worker pool: a PKCS#11 module's state and its sessions
belong to the process that initialised them (unusable in a fork, and the pool's sandboxed
workers are other interpreters, with no business holding keys). pyHanko's sync
wrappers call asyncio.run, which is fine in a thread without a loop.

Secrets (the PKCS#12 password, the PIN) never appear in an exception's message or a log
line: every failure is turned into a `SigningRefused` with a fixed message.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from asn1crypto import x509 as asn1_x509
    from pyhanko.sign.signers.pdf_cms import Signer

# pyHanko (and asn1crypto) are imported where they are used: importing them is a tenth of the
# server's start (about 0.3 s of CPU), paid by every process, though only signing and
# verifying need them.

log = logging.getLogger(__name__)
MAX_PDF_BYTES = 50 * 1024 * 1024


class SigningRefused(Exception):
    """A signature that is not made; `code` is stable, the message safe to show."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass(frozen=True)
class Pkcs12Key:
    data: bytes = field(repr=False)
    password: str = field(repr=False)


@dataclass(frozen=True)
class TokenKey:
    module: Path  # the PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so
    token_label: str
    key_label: str
    pin: str = field(repr=False)


Key = Pkcs12Key | TokenKey


@dataclass(frozen=True)
class SignatureInfo:
    """One signature found in a PDF, as verified."""

    field_name: str
    signer: str  # the certificate's subject common name (else its whole subject)
    signed_at: str | None  # ISO 8601, as the signer reported it
    intact: bool  # the bytes it covers are unchanged
    valid: bool  # the cryptographic signature checks out
    trusted: bool  # the certificate chains to a trust anchor (at the signing time)
    covers_whole_file: bool  # nothing was appended after it
    later_changes_allowed: bool  # what was appended after it is only more signatures
    certificate_sha256: str

    @property
    def ok(self) -> bool:
        return self.intact and self.valid and self.trusted and self.later_changes_allowed

    def as_dict(self) -> dict[str, Any]:
        return {"field": self.field_name, "signer": self.signer, "signed_at": self.signed_at,
                "intact": self.intact, "valid": self.valid, "trusted": self.trusted,
                "covers_whole_file": self.covers_whole_file,
                "later_changes_allowed": self.later_changes_allowed,
                "certificate_sha256": self.certificate_sha256, "ok": self.ok}


@dataclass(frozen=True)
class Verification:
    signatures: list[SignatureInfo]
    error: str = ""  # the file could not be read as a signed PDF at all

    @property
    def intact(self) -> bool:
        """Every signature verifies and the last one covers the whole file."""
        return (not self.error and bool(self.signatures)
                and all(s.ok for s in self.signatures) and self.signatures[-1].covers_whole_file)

    def as_dict(self) -> dict[str, Any]:
        return {"intact": self.intact, "error": self.error,
                "signatures": [s.as_dict() for s in self.signatures]}


def load_trust_anchors(path: Path) -> list[asn1_x509.Certificate]:
    """Every certificate in a PEM (or one DER) file; raises ValueError saying what is wrong."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read the signing trust anchors {path}: {exc.strerror}") from None
    from asn1crypto import pem
    from asn1crypto import x509 as asn1_x509
    try:
        if pem.detect(raw):
            certs = [asn1_x509.Certificate.load(der) for kind, _, der in pem.unarmor(raw, True)
                     if kind == "CERTIFICATE"]
        else:
            certs = [asn1_x509.Certificate.load(raw)]
        for cert in certs:
            cert.native  # noqa: B018  (parses it now: a broken file fails at start)
    except Exception:
        raise ValueError(f"the signing trust anchors {path} are not PEM/DER certificates") \
            from None
    if not certs:
        raise ValueError(f"the signing trust anchors {path} hold no certificate")
    return certs


def _common_name(cert: asn1_x509.Certificate) -> str:
    name = cert.subject.native
    return str(name.get("common_name") or cert.subject.human_friendly)


async def _check_certificate(cert: asn1_x509.Certificate, others: Sequence[asn1_x509.Certificate],
                             anchors: Sequence[asn1_x509.Certificate], now: datetime) -> None:
    """Refuse an expired, not yet valid or untrusted signing certificate, clearly."""
    from pyhanko_certvalidator import CertificateValidator, ValidationContext
    from pyhanko_certvalidator.errors import PathError, ValidationError

    validity = cert["tbs_certificate"]["validity"]
    not_before, not_after = validity["not_before"].native, validity["not_after"].native
    who = _common_name(cert)
    if now > not_after:
        raise SigningRefused("certificate_expired",
                             f"the certificate of {who} expired on {not_after:%Y-%m-%d}")
    if now < not_before:
        raise SigningRefused("certificate_not_yet_valid",
                             f"the certificate of {who} is valid from {not_before:%Y-%m-%d}")
    context = ValidationContext(trust_roots=list(anchors), moment=now, allow_fetching=False,
                                revocation_mode="soft-fail")
    validator = CertificateValidator(cert, intermediate_certs=list(others),
                                     validation_context=context)
    try:
        await validator.async_validate_usage({"digital_signature"})
    except (PathError, ValidationError) as exc:
        log.info("signing refused: certificate of %s not trusted: %s", who, type(exc).__name__)
        raise SigningRefused("certificate_untrusted",
                             f"the certificate of {who} is not issued by a trusted authority "
                             "(the server's signing trust anchors)") from None


async def _sign_with(signer: Signer, pdf: bytes, field_name: str, reason: str, location: str,
                     anchors: Sequence[asn1_x509.Certificate], now: datetime) -> bytes:
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import fields, signers

    cert = signer.signing_cert
    if cert is None:
        raise SigningRefused("key_not_found", "the key has no certificate")
    await _check_certificate(cert, list(signer.cert_registry), anchors, now)
    meta = signers.PdfSignatureMetadata(field_name=field_name, md_algorithm="sha256",
                                        subfilter=fields.SigSeedSubFilter.PADES,
                                        reason=reason or None, location=location or None,
                                        name=_common_name(cert))
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf), strict=False)
    out = await signers.PdfSigner(meta, signer=signer).async_sign_pdf(writer, in_place=False)
    return out.getvalue()  # type: ignore[no-any-return, union-attr]


def _pkcs12_signer(key: Pkcs12Key) -> Signer:
    from pyhanko.sign import signers

    try:
        signer = signers.SimpleSigner.load_pkcs12_data(key.data, (),
                                                       passphrase=key.password.encode("utf-8"))
    except Exception:
        signer = None
    if signer is None:  # pyHanko returns None or raises for a wrong password or a broken file
        raise SigningRefused("bad_key", "the PKCS#12 file could not be opened: wrong password "
                                        "or not a PKCS#12 file")
    return signer


async def _sign_token(key: TokenKey, pdf: bytes, field_name: str, reason: str, location: str,
                      anchors: Sequence[asn1_x509.Certificate], now: datetime) -> bytes:
    from pkcs11 import exceptions as p11e
    from pyhanko.config.pkcs11 import TokenCriteria
    from pyhanko.sign import pkcs11 as p11
    try:
        session = p11.open_pkcs11_session(str(key.module),
                                          token_criteria=TokenCriteria(label=key.token_label),
                                          user_pin=key.pin)
    except (p11e.PinIncorrect, p11e.PinInvalid, p11e.PinLenRange):
        raise SigningRefused("bad_key", "the token refused the PIN") from None
    except p11e.PinLocked:
        raise SigningRefused("bad_key", "the token's PIN is locked") from None
    except Exception as exc:
        log.warning("PKCS#11 token %r unavailable: %s", key.token_label, type(exc).__name__)
        raise SigningRefused("token_unavailable",
                             f"the signing token {key.token_label!r} is not available") from None
    try:
        signer = p11.PKCS11Signer(session, key_label=key.key_label, cert_label=key.key_label)
        try:
            await signer.ensure_objects_loaded()
        except SigningRefused:
            raise
        except Exception:
            raise SigningRefused("key_not_found", f"no key and certificate labelled "
                                                  f"{key.key_label!r} on the token") from None
        return await _sign_with(signer, pdf, field_name, reason, location, anchors, now)
    finally:
        session.close()


def _off_the_loop() -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError("signing and verifying block: run them in a thread, not on the loop")


def sign_pdf(pdf: bytes, key: Key, *, field_name: str, anchors: Sequence[asn1_x509.Certificate],
             reason: str = "", location: str = "", now: datetime | None = None) -> bytes:
    """`pdf` with one more PAdES signature appended (an incremental update). Blocking."""
    _off_the_loop()
    if not anchors:
        raise SigningRefused("signing_unavailable", "no signing trust anchors are configured")
    moment = now or datetime.now(UTC)

    async def run() -> bytes:
        if isinstance(key, TokenKey):
            return await _sign_token(key, pdf, field_name, reason, location, anchors, moment)
        return await _sign_with(_pkcs12_signer(key), pdf, field_name, reason, location,
                                anchors, moment)
    try:
        return asyncio.run(run())
    except SigningRefused:
        raise
    except Exception as exc:  # pyHanko's own errors name no secret, but say only the type
        log.warning("signing failed: %s", type(exc).__name__)
        raise SigningRefused("signing_failed", "the signature could not be made") from None


_HEX = frozenset(b"0123456789abcdef")


def _der_length(data: bytes) -> int | None:
    """The length of the DER value at the start of `data` (tag, length, content)."""
    if len(data) < 2 or data[0] != 0x30:
        return None
    first = data[1]
    if first < 0x80:
        return 2 + first
    count = first & 0x7F
    if not 1 <= count <= 4 or len(data) < 2 + count:
        return None
    return 2 + count + int.from_bytes(data[2:2 + count], "big")


def _gap_unchanged(pdf: bytes, sig: Any) -> bool:
    """The bytes a signature cannot cover (its own /Contents hex string, between the two
    byte ranges) hold exactly the signature and zero padding, written in one case.

    Without this a changed byte in the padding, or a hex digit changed to the other case,
    would still verify: the digest never sees them. "A changed byte fails" means any byte."""
    try:
        _, end_first, start_second, _ = (int(x) for x in sig.byte_range)
        gap = pdf[end_first:start_second]
        if len(gap) < 2 or gap[:1] != b"<" or gap[-1:] != b">":
            return False
        text = gap[1:-1]
        if not (set(text) <= _HEX or (set(text.lower()) <= _HEX and text == text.upper())):
            return False
        raw = bytes.fromhex(text.decode("ascii"))
        length = _der_length(raw)
        return length is not None and length <= len(raw) and not any(raw[length:])
    except (ValueError, TypeError):
        return False


async def _verify_one(pdf: bytes, sig: Any, anchors: Sequence[asn1_x509.Certificate]
                      ) -> SignatureInfo:
    from pyhanko.sign.diff_analysis.policy_api import ModificationLevel
    from pyhanko.sign.validation import async_validate_pdf_signature
    from pyhanko.sign.validation.status import SignatureCoverageLevel
    from pyhanko_certvalidator import ValidationContext

    # Checked at the time the signer reported: a certificate that has expired since still
    # shows the minutes as signed while it was valid (no timestamp authority vouches for
    # that time yet: docs/operations.md, "Signed minutes").
    moment = sig.self_reported_timestamp or datetime.now(UTC)
    context = ValidationContext(trust_roots=list(anchors), moment=moment, allow_fetching=False,
                                revocation_mode="soft-fail")
    status = await async_validate_pdf_signature(sig, signer_validation_context=context)
    level = status.modification_level
    allowed = level is None or level <= ModificationLevel.FORM_FILLING
    cert = status.signing_cert
    return SignatureInfo(
        field_name=str(sig.field_name), signer=_common_name(cert),
        signed_at=status.signer_reported_dt.astimezone(UTC).isoformat()
        if status.signer_reported_dt else None,
        intact=bool(status.intact) and _gap_unchanged(pdf, sig), valid=bool(status.valid),
        trusted=bool(status.trusted),
        covers_whole_file=status.coverage == SignatureCoverageLevel.ENTIRE_FILE,
        later_changes_allowed=bool(allowed and status.docmdp_ok is not False),
        certificate_sha256=cert.sha256.hex())


def verify_pdf(pdf: bytes, anchors: Sequence[asn1_x509.Certificate]) -> Verification:
    """Every signature of `pdf`, checked. Never raises for a hostile file. Blocking."""
    _off_the_loop()
    if len(pdf) > MAX_PDF_BYTES:
        return Verification([], error="the file is too large")

    async def run() -> list[SignatureInfo]:
        from pyhanko.pdf_utils.reader import PdfFileReader

        reader = PdfFileReader(io.BytesIO(pdf), strict=False)
        return [await _verify_one(pdf, sig, anchors) for sig in reader.embedded_signatures]
    try:
        found = asyncio.run(run())
    except Exception as exc:  # a damaged file: report it, never crash the caller
        log.info("signature verification failed: %s", type(exc).__name__)
        return Verification([], error="the file is damaged: its signatures cannot be read")
    if not found:
        return Verification([], error="the file has no signature")
    return Verification(found)
