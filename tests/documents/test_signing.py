"""PAdES signatures with PKCS#12 keys: two signatures over the same file both verify, a
changed byte fails, and expired, untrusted or unopenable keys are refused before signing."""

from __future__ import annotations

import logging
import random
from datetime import UTC, datetime, timedelta

import pytest

from documents import signing
from documents.signing_testca import make_ca, pkcs12_for
from tests.documents.signing_support import anchors, small_pdf

CA = make_ca()
TRUST = anchors(CA)


def key(name: str, password: str = "mật-khẩu-1", **kw: datetime) -> signing.Pkcs12Key:
    return signing.Pkcs12Key(pkcs12_for(CA, name, password, **kw), password)


def test_secretary_then_chair_both_verify_and_the_first_covers_the_draft() -> None:
    draft = small_pdf()
    once = signing.sign_pdf(draft, key("Trần Thị Lan"), field_name="ThuKy", anchors=TRUST)
    twice = signing.sign_pdf(once, key("Nguyễn Văn Hùng"), field_name="ChuTri", anchors=TRUST)
    assert once.startswith(draft) and twice.startswith(once)  # incremental updates
    report = signing.verify_pdf(twice, TRUST)
    assert report.intact, report.as_dict()
    first, second = report.signatures
    assert (first.field_name, first.signer) == ("ThuKy", "Trần Thị Lan")
    assert (second.field_name, second.signer) == ("ChuTri", "Nguyễn Văn Hùng")
    assert first.ok and second.ok and second.covers_whole_file
    assert not first.covers_whole_file and first.later_changes_allowed  # only a signature after
    assert first.signed_at and datetime.fromisoformat(first.signed_at) <= datetime.now(UTC)


def test_a_changed_byte_fails_verification() -> None:
    signed = signing.sign_pdf(small_pdf(), key("Trần Thị Lan"), field_name="ThuKy",
                              anchors=TRUST)
    assert signing.verify_pdf(signed, TRUST).intact
    start = signed.index(b"stream") + len(b"stream\n") + 5  # inside the page's content
    for at in (start, len(signed) // 2):
        tampered = bytearray(signed)
        tampered[at] ^= 0x01
        report = signing.verify_pdf(bytes(tampered), TRUST)
        assert not report.intact, at
        assert report.error or not all(s.intact for s in report.signatures)


def test_any_changed_byte_fails_even_where_the_digest_does_not_reach() -> None:
    """Sampled over the whole file, and where the digest never looks: the signature's own
    hex string, its zero padding, a hex digit written in the other case."""
    draft = small_pdf()
    once = signing.sign_pdf(draft, key("Trần Thị Lan"), field_name="ThuKy", anchors=TRUST)
    both = signing.sign_pdf(once, key("Nguyễn Văn Hùng"), field_name="ChuTri", anchors=TRUST)
    gap = both.index(b"/Contents <", len(once)) + len(b"/Contents <")
    used = len(both[gap:both.index(b">", gap)].rstrip(b"0"))
    digit_a = both.index(b"a", gap)
    positions = {*random.Random(16).sample(range(len(both)), 40), gap, gap + used - 1,
                 gap + used + 7, len(once) - 3}
    for at in sorted(positions):
        changed = bytearray(both)
        changed[at] = ord("1") if changed[at] == ord("0") else ord("0")
        assert not signing.verify_pdf(bytes(changed), TRUST).intact, at
    changed = bytearray(both)
    changed[digit_a] = ord("A")
    assert not signing.verify_pdf(bytes(changed), TRUST).intact


def test_bytes_appended_after_the_last_signature_show() -> None:
    signed = signing.sign_pdf(small_pdf(), key("Trần Thị Lan"), field_name="ThuKy",
                              anchors=TRUST)
    report = signing.verify_pdf(signed + b"\n% added later\n", TRUST)
    assert not report.intact and not report.signatures[0].covers_whole_file


def test_an_expired_certificate_is_refused_clearly() -> None:
    now = datetime.now(UTC)
    old = key("Lê Văn Cũ", not_before=now - timedelta(days=400), not_after=now - timedelta(days=2))
    with pytest.raises(signing.SigningRefused) as refused:
        signing.sign_pdf(small_pdf(), old, field_name="ThuKy", anchors=TRUST)
    assert refused.value.code == "certificate_expired"
    assert "Lê Văn Cũ" in refused.value.message and "expired" in refused.value.message


def test_a_certificate_from_another_authority_is_refused_and_does_not_verify() -> None:
    other = make_ca("Some other CA")
    stranger = signing.Pkcs12Key(pkcs12_for(other, "Người lạ", "x"), "x")
    with pytest.raises(signing.SigningRefused) as refused:
        signing.sign_pdf(small_pdf(), stranger, field_name="ThuKy", anchors=TRUST)
    assert refused.value.code == "certificate_untrusted"
    # Signed where the other CA is trusted, it still does not verify against ours.
    signed = signing.sign_pdf(small_pdf(), stranger, field_name="ThuKy", anchors=anchors(other))
    report = signing.verify_pdf(signed, TRUST)
    assert not report.intact and report.signatures[0].intact and not report.signatures[0].trusted


def test_no_trust_anchors_means_no_signature() -> None:
    with pytest.raises(signing.SigningRefused) as refused:
        signing.sign_pdf(small_pdf(), key("Trần Thị Lan"), field_name="ThuKy", anchors=[])
    assert refused.value.code == "signing_unavailable"


def test_a_wrong_password_is_refused_without_the_password_anywhere(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = signing.Pkcs12Key(pkcs12_for(CA, "Trần Thị Lan", "đúng-rồi"), "sai-MAT-KHAU-9")
    with pytest.raises(signing.SigningRefused) as refused:
        signing.sign_pdf(small_pdf(), wrong, field_name="ThuKy", anchors=TRUST)
    assert refused.value.code == "bad_key"
    assert "sai-MAT-KHAU-9" not in str(refused.value) + repr(wrong) + caplog.text
    chained = refused.value.__cause__ or (None if refused.value.__suppress_context__
                                          else refused.value.__context__)
    assert chained is None  # no underlying error (which could quote the input) rides along
    junk = signing.Pkcs12Key(b"not a pkcs12 file", "x")
    with pytest.raises(signing.SigningRefused, match="PKCS#12"):
        signing.sign_pdf(small_pdf(), junk, field_name="ThuKy", anchors=TRUST)


@pytest.mark.parametrize("data", [b"", b"%PDF-1.7\n garbage", small_pdf()[:200],
                                  small_pdf()])
def test_damaged_or_unsigned_files_report_not_intact(data: bytes) -> None:
    report = signing.verify_pdf(data, TRUST)
    assert not report.intact and report.error and not report.signatures
