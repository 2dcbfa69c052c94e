"""PAdES signatures with a key that never leaves a PKCS#11 token (SoftHSM2, a real token)."""

from __future__ import annotations

import logging
import secrets
from datetime import UTC, datetime, timedelta

import pytest

from documents import signing
from documents.signing_testca import make_ca
from testkit import softhsm
from tests.conftest import IN_CI
from tests.documents.signing_support import anchors, small_pdf

if (why := softhsm.missing()) is not None:
    if IN_CI:
        pytest.fail(f"{why}: CI must test signing on a token", pytrace=False)
    pytest.skip(why, allow_module_level=True)

CA = make_ca()
TRUST = anchors(CA)
LABEL, EXPIRED = f"chair-{secrets.token_hex(3)}", f"expired-{secrets.token_hex(3)}"


@pytest.fixture(scope="module")
def token() -> softhsm.SoftToken:
    made = softhsm.SoftToken.shared()
    now = datetime.now(UTC)
    made.add_signer(CA, LABEL, "Nguyễn Văn Hùng")
    made.add_signer(CA, EXPIRED, "Lê Văn Cũ", not_before=now - timedelta(days=400),
                    not_after=now - timedelta(days=1))
    return made


def token_key(token: softhsm.SoftToken, label: str, pin: str | None = None) -> signing.TokenKey:
    return signing.TokenKey(token.module, token.label, label, token.pin if pin is None else pin)


def test_a_token_key_signs_over_a_pkcs12_signature_and_both_verify(
        token: softhsm.SoftToken) -> None:
    from documents.signing_testca import pkcs12_for
    first = signing.sign_pdf(small_pdf(), signing.Pkcs12Key(pkcs12_for(CA, "Trần Thị Lan", "p"),
                                                            "p"),
                             field_name="ThuKy", anchors=TRUST)
    both = signing.sign_pdf(first, token_key(token, LABEL), field_name="ChuTri",
                            anchors=TRUST)
    report = signing.verify_pdf(both, TRUST)
    assert report.intact, report.as_dict()
    assert [s.signer for s in report.signatures] == ["Trần Thị Lan", "Nguyễn Văn Hùng"]
    tampered = bytearray(both)
    tampered[len(first) // 2] ^= 0x20
    assert not signing.verify_pdf(bytes(tampered), TRUST).intact


def test_a_wrong_pin_is_refused_and_never_shown(token: softhsm.SoftToken,
                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(signing.SigningRefused) as refused:
        signing.sign_pdf(small_pdf(), token_key(token, LABEL, "99887766"),
                         field_name="ChuTri", anchors=TRUST)
    assert refused.value.code == "bad_key" and "PIN" in refused.value.message
    assert "99887766" not in refused.value.message + caplog.text


def test_an_expired_certificate_on_the_token_is_refused(token: softhsm.SoftToken) -> None:
    with pytest.raises(signing.SigningRefused) as refused:
        signing.sign_pdf(small_pdf(), token_key(token, EXPIRED), field_name="ChuTri",
                         anchors=TRUST)
    assert refused.value.code == "certificate_expired"


def test_a_missing_key_or_token_is_named(token: softhsm.SoftToken) -> None:
    with pytest.raises(signing.SigningRefused) as refused:
        signing.sign_pdf(small_pdf(), token_key(token, "nobody"), field_name="ChuTri",
                         anchors=TRUST)
    assert refused.value.code == "key_not_found" and "nobody" in refused.value.message
    absent = signing.TokenKey(token.module, "no-such-token", LABEL, token.pin)
    with pytest.raises(signing.SigningRefused) as refused:
        signing.sign_pdf(small_pdf(), absent, field_name="ChuTri", anchors=TRUST)
    assert refused.value.code == "token_unavailable"
