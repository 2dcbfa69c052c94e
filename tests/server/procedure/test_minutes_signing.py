"""Signed minutes over HTTP: the secretary drafts, the chair approves, each signs (PKCS#12
here, the chair on a SoftHSM2 token in the last test); every step is audited, refused for
anyone else before anything is written, and a stored file changed afterwards shows."""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from documents import signing
from documents.signing_testca import SigningCA, make_ca, pkcs12_for
from rooms.minutes_signing import MinutesReview, MinutesSignature
from server.core import keys
from testkit import softhsm
from tests.conftest import IN_CI, Harness, start_harness
from tests.documents.signing_support import anchors
from tests.server.procedure.test_minutes import download
from tests.server.procedure_helpers import Member, close_all, open_demo

CA = make_ca()


@pytest.fixture
async def signed_hopso(tmp_path: Path, harness_database_url: str | None) -> AsyncIterator[Harness]:
    ca_file = tmp_path / "trust.pem"
    ca_file.write_bytes(CA.pem)
    harness = await start_harness(tmp_path, harness_database_url, signing_ca=ca_file)
    yield harness
    await harness.close()
    await harness.server.close()


def p12(name: str, ca: SigningCA = CA, **kw: datetime) -> dict[str, Any]:
    password = secrets.token_hex(6)
    data = pkcs12_for(ca, name, password, **kw)
    return {"key": "pkcs12", "pkcs12": base64.b64encode(data).decode(), "password": password}


async def step(member: Member, m: int, version: int, action: str,
               body: dict[str, Any] | None = None) -> tuple[int, Any]:
    return await member.http.call("POST", f"/api/meetings/{m}/minutes/{version}/{action}", body)


def code(body: Any) -> str:
    return str(body["error"]["code"])


async def test_draft_review_and_two_signatures_with_access_checked_before_writes(
        signed_hopso: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    h = signed_hopso
    m, people = await open_demo(h, "thuky", "daibieu")
    chair, thuky, d1 = people["chutri"], people["thuky"], people["daibieu"]
    pushed: list[dict[str, Any]] = []
    d1.sio.on("minutes:review", pushed.append)
    status, v1 = await thuky.http.call("POST", f"/api/meetings/{m}/minutes")
    assert status == 201
    draft = await download(d1, f"/api/meetings/{m}/minutes/1.pdf")

    # Only the secretary drafts, only the chair approves; refusals write nothing.
    for who, action in ((d1, "submit"), (chair, "submit"), (thuky, "approve"), (d1, "approve")):
        status, body = await step(who, m, 1, action)
        assert status == 403, (who.name, action, body)
    assert code((await step(chair, m, 1, "approve"))[1]) == "wrong_stage"  # not submitted
    assert code((await step(thuky, m, 1, "sign", p12("Trần Thị Lan")))[1]) == "wrong_stage"
    status, body = await step(thuky, m, 1, "submit")
    assert status == 200 and body["stage"] == "draft", body
    assert code((await step(thuky, m, 1, "submit"))[1]) == "wrong_stage"
    status, body = await step(chair, m, 1, "approve")
    assert status == 200 and body["stage"] == "reviewed" and body["reviewed_by"], body
    assert code((await step(chair, m, 1, "sign", p12("Nguyễn Văn Hùng")))[1]) == "wrong_stage"
    assert (await step(d1, m, 1, "sign", p12("Lê Minh Tuấn")))[0] == 403

    # A wrong password: refused, and the password is nowhere in the answer.
    wrong = {**p12("Trần Thị Lan"), "password": "sai-mat-khau-123"}
    status, body = await step(thuky, m, 1, "sign", wrong)
    assert status == 422 and code(body) == "bad_key" and "sai-mat-khau" not in str(body)

    status, body = await step(thuky, m, 1, "sign", p12("Trần Thị Lan"))
    assert status == 201 and body["stage"] == "signing", body
    status, body = await step(chair, m, 1, "sign", p12("Nguyễn Văn Hùng"))
    assert status == 201 and body["stage"] == "signed", body
    assert (await step(chair, m, 1, "sign", p12("Nguyễn Văn Hùng")))[0] == 409  # once

    checks: list[int] = []

    def counted(pdf: bytes, anchors: Any) -> signing.Verification:
        checks.append(len(pdf))
        return real_verify(pdf, anchors)
    real_verify = signing.verify_pdf
    monkeypatch.setattr(signing, "verify_pdf", counted)
    answers = await asyncio.gather(*(who.http.call(
        "GET", f"/api/meetings/{m}/minutes/1/signatures") for who in (d1, chair, thuky) * 8))
    assert len(checks) == 1, checks  # a push makes every screen ask: the file is checked once
    status, info = answers[0]
    assert status == 200 and info["intact"] and info["verification"]["intact"], info
    assert all(answer == answers[0] for answer in answers)
    assert [(s["role"], s["signer"], s["intact"]) for s in info["signatures"]] == [
        ("secretary", "Trần Thị Lan", True), ("chair", "Nguyễn Văn Hùng", True)]
    assert info["signatures"][1]["user_name"] == "Nguyễn Văn Hùng"
    signed = await download(d1, info["url"])
    assert signed.startswith(draft)  # signatures over the exact bytes of the draft
    report = await asyncio.to_thread(signing.verify_pdf, signed, anchors(CA))
    assert report.intact and [s.field_name for s in report.signatures] == ["ThuKy", "ChuTri"]
    stages = [p["review"]["stage"] for p in pushed]
    assert stages == ["draft", "reviewed", "signing", "signed"], stages  # pushed to members

    status, audit = await chair.http.call("GET", f"/api/meetings/{m}/audit")
    assert audit["chain"]["ok"]
    steps = [(e["kind"], e["data"].get("role")) for e in audit["entries"]
             if e["kind"].startswith("minutes_") and e["kind"] != "minutes_generated"]
    assert steps == [("minutes_drafted", None), ("minutes_reviewed", None),
                     ("minutes_signed", "secretary"), ("minutes_signed", "chair")]
    assert "sai-mat-khau" not in str(audit)

    # A new draft is a new version; the signed one keeps its signatures and moves no more.
    status, v2 = await chair.http.call("POST", f"/api/meetings/{m}/minutes")
    assert status == 201 and v2["version"] == 2 and v1["version"] == 1
    status, body = await step(thuky, m, 1, "submit")
    assert status == 409 and code(body) == "superseded"
    assert (await step(thuky, m, 2, "submit"))[0] == 200
    status, info = await d1.http.call("GET", f"/api/meetings/{m}/minutes/1/signatures")
    assert info["stage"] == "signed" and info["intact"] and info["latest"] == 2

    # A byte of the stored signed file changed (a database edit): shown as not intact.
    async with h.server.app[keys.DB].session() as s:
        row = (await s.exec(select(MinutesSignature).where(
            MinutesSignature.version == 1, MinutesSignature.role == "chair"))).one()
        tampered = bytearray(row.pdf)
        tampered[len(draft) // 2] ^= 0x01
        row.pdf = bytes(tampered)
        s.add(row)
        await s.commit()
    status, info = await d1.http.call("GET", f"/api/meetings/{m}/minutes/1/signatures")
    assert status == 200 and not info["intact"], info
    assert not any(sig["intact"] for sig in info["signatures"])
    await close_all(people)


async def test_expired_and_untrusted_certificates_are_refused_and_nothing_is_kept(
        signed_hopso: Harness) -> None:
    m, people = await open_demo(signed_hopso, "thuky")
    chair, thuky = people["chutri"], people["thuky"]
    await thuky.http.call("POST", f"/api/meetings/{m}/minutes")
    assert (await step(thuky, m, 1, "submit"))[0] == 200
    assert (await step(chair, m, 1, "approve"))[0] == 200
    now = datetime.now(UTC)
    expired = p12("Trần Thị Lan", not_before=now - timedelta(days=400),
                  not_after=now - timedelta(days=1))
    status, body = await step(thuky, m, 1, "sign", expired)
    assert status == 422 and code(body) == "certificate_expired", body
    assert "expired" in body["error"]["message"]
    status, body = await step(thuky, m, 1, "sign", p12("Trần Thị Lan", make_ca("Other CA")))
    assert status == 422 and code(body) == "certificate_untrusted", body
    for bad in ({"key": "pkcs12", "pkcs12": "***", "password": "x"}, {"key": "usb"},
                {"key": "pkcs12", "pkcs12": "", "password": "x"}):
        status, body = await step(thuky, m, 1, "sign", bad)
        assert status == 400, (bad, body)
    status, body = await step(thuky, m, 1, "sign", {"key": "pkcs11", "pin": "1234"})
    assert status == 422 and code(body) == "token_unavailable"  # none configured here
    async with signed_hopso.server.app[keys.DB].session() as s:
        assert not (await s.exec(select(MinutesSignature))).all()
        review = (await s.exec(select(MinutesReview))).one()
        assert review.stage == "reviewed"
    assert (await thuky.http.call("GET", f"/api/meetings/{m}/minutes/1/signed.pdf"))[0] == 404
    for missing in ("2/signatures", "0/signatures", "2/signed.pdf", "999999999/submit"):
        method = "POST" if missing.endswith("submit") else "GET"
        status, body = await thuky.http.call(method, f"/api/meetings/{m}/minutes/{missing}")
        assert status == 404, (missing, body)
    await close_all(people)


async def test_the_chair_signs_with_a_key_on_a_pkcs11_token(tmp_path: Path) -> None:
    if (why := softhsm.missing()) is not None:
        if IN_CI:
            pytest.fail(why)
        pytest.skip(why)
    token = softhsm.SoftToken.shared()
    # Labelled with the chair's login: the label a sign request uses by default (only this
    # test puts "chutri" on its process's token).
    token.add_signer(CA, "chutri", "Nguyễn Văn Hùng")
    ca_file = tmp_path / "trust.pem"
    ca_file.write_bytes(CA.pem)
    h = await start_harness(tmp_path, None, signing_ca=ca_file,
                            signing_pkcs11_module=token.module, signing_pkcs11_token=token.label)
    try:
        m, people = await open_demo(h, "thuky")
        chair, thuky = people["chutri"], people["thuky"]
        await thuky.http.call("POST", f"/api/meetings/{m}/minutes")
        for who, action, body in ((thuky, "submit", None), (chair, "approve", None),
                                  (thuky, "sign", p12("Trần Thị Lan"))):
            assert (await step(who, m, 1, action, body))[0] in (200, 201)
        status, body = await step(chair, m, 1, "sign", {"key": "pkcs11", "pin": "00000000"})
        assert status == 422 and code(body) == "bad_key" and "00000000" not in str(body)
        status, body = await step(chair, m, 1, "sign", {"key": "pkcs11", "pin": token.pin,
                                                         "key_label": "chutri-nobody"})
        assert status == 422 and code(body) == "key_not_found", body
        status, body = await step(chair, m, 1, "sign", {"key": "pkcs11", "pin": token.pin})
        assert status == 201 and body["stage"] == "signed", body
        status, info = await chair.http.call("GET", f"/api/meetings/{m}/minutes/1/signatures")
        assert info["intact"] and info["signatures"][1]["key"] == "pkcs11"
        await close_all(people)
    finally:
        await h.close()
        await h.server.close()
