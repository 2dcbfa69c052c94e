"""A closed vote's result signed by the chair like the minutes, and any member checking a
signed file they hold: intact and recorded in the meeting's audit chain, or not."""

from __future__ import annotations

from typing import Any

from tests.conftest import Harness
from tests.server.procedure.test_minutes import pdf_text
from tests.server.procedure.test_minutes_signing import (  # noqa: F401  (the fixture)
    code,
    p12,
    signed_hopso,
)
from tests.server.procedure_helpers import Member, add_item, close_all, open_demo


async def post_pdf(member: Member, path: str, body: dict[str, Any] | bytes,
                   ) -> tuple[int, bytes | dict[str, Any]]:
    http = member.http
    headers = {"X-CSRF-Token": http.csrf}
    kw: dict[str, Any] = {"json": body} if isinstance(body, dict) else {
        "data": body, "headers": {**headers, "Content-Type": "application/pdf"}}
    kw.setdefault("headers", headers)
    async with http.session.post(http.base + path, **kw) as r:
        return r.status, (await r.read() if r.content_type == "application/pdf"
                          else await r.json())


async def test_the_chair_signs_a_vote_result_and_members_check_the_file(
        signed_hopso: Harness) -> None:  # noqa: F811
    m, people = await open_demo(signed_hopso, "thuky", "daibieu")
    chair, thuky, d1 = people["chutri"], people["thuky"], people["daibieu"]
    item = await add_item(thuky, m, "Quy hoạch sử dụng đất")
    for member in (chair, d1):
        await member.ok("attendance:check_in", {"meeting_id": m, "mode": "in_person"})
    vote = await chair.ok("vote:open", {"meeting_id": m, "agenda_item_id": item["id"],
                                        "question": "Thông qua quy hoạch sử dụng đất"})
    base = f"/api/meetings/{m}/votes/{vote['id']}"
    status, body = await post_pdf(chair, base + "/result/sign", p12("Nguyễn Văn Hùng"))
    assert status == 409 and code(body) == "vote_open"
    for member in (chair, d1):
        await member.ok("vote:cast", {"meeting_id": m, "vote_id": vote["id"], "option": 0,
                                      "seq": 1})
    await chair.ok("vote:close", {"meeting_id": m, "vote_id": vote["id"]})

    async with d1.http.session.get(d1.http.base + base + "/result.pdf") as r:
        assert r.status == 200 and r.content_type == "application/pdf"
        words = pdf_text(await r.read())
    for expected in ("KẾT QUẢ BIỂU QUYẾT", "Thông qua quy hoạch sử dụng đất",
                     "Tán thành: 2/2 đại biểu (100,00%)", "Kết quả: Thông qua.", "CHỦ TRÌ", "Nguyễn Văn Hùng"):
        assert expected in words, (expected, words)

    assert (await post_pdf(thuky, base + "/result/sign", p12("Trần Thị Lan")))[0] == 403
    status, body = await post_pdf(chair, base + "/result/sign",
                                  {**p12("Nguyễn Văn Hùng"), "password": "sai-123456"})
    assert status == 422 and code(body) == "bad_key" and "sai-123456" not in str(body)
    status, signed = await post_pdf(chair, base + "/result/sign", p12("Nguyễn Văn Hùng"))
    assert status == 201 and isinstance(signed, bytes) and signed.startswith(b"%PDF")

    status, report = await post_pdf(d1, f"/api/meetings/{m}/signatures/verify", signed)
    assert status == 200 and isinstance(report, dict) and report["intact"], report
    assert report["signatures"][0]["signer"] == "Nguyễn Văn Hùng"
    assert [a["kind"] for a in report["audited"]] == ["vote_result_signed"]
    assert report["audited"][0]["data"]["vote_id"] == vote["id"]

    tampered = bytearray(signed)
    tampered[len(signed) // 3] ^= 0x01
    status, report = await post_pdf(d1, f"/api/meetings/{m}/signatures/verify", bytes(tampered))
    assert status == 200 and isinstance(report, dict)
    assert not report["intact"] and report["audited"] == []
    status, report = await post_pdf(d1, f"/api/meetings/{m}/signatures/verify", b"not a pdf")
    assert status == 200 and isinstance(report, dict) and report["error"]
    outsider = await signed_hopso.login("quantri")
    async with outsider.session.post(f"{outsider.base}/api/meetings/{m}/signatures/verify",
                                     data=signed, headers={"X-CSRF-Token": outsider.csrf,
                                                           "Content-Type": "application/pdf"}) as r:
        assert r.status == 404
    await close_all(people)
