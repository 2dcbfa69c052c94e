"""Minutes: a PDF of the sitting with the vote result in correct Vietnamese, archived in
versions, downloadable by members only; and the audit chain behind it."""

from __future__ import annotations

import hashlib

import pymupdf

from tests.conftest import Harness
from tests.server.procedure_helpers import add_item, close_all, open_demo

DELEGATES = ("daibieu", "daibieu2", "daibieu3")
CONCLUSIONS = "Giao Sở Thông tin và Truyền thông chủ trì triển khai kế hoạch trong quý I/2027."


def pdf_text(pdf: bytes) -> str:
    with pymupdf.open(stream=pdf, filetype="pdf") as doc:
        return " ".join(" ".join(page.get_text() for page in doc).split())


async def test_minutes_carry_the_record_and_are_archived(hopso: Harness) -> None:
    m, people = await open_demo(hopso, "thuky", "daibieu", "daibieu2")
    chair, thuky, d1, d2 = (people[n] for n in ("chutri", "thuky", "daibieu", "daibieu2"))
    item = await add_item(thuky, m, "Kế hoạch chuyển đổi số năm 2026", planned_minutes=20,
                          presenter_name="Sở Thông tin và Truyền thông")
    status, rules = await thuky.http.call("PUT", f"/api/meetings/{m}/procedure/settings",
                                          {"rule_set": "committee"})
    assert status == 200 and rules == {"rule_set": "committee", "quorum_rule": "two_thirds"}
    await thuky.ok("agenda:set_current", {"meeting_id": m, "item_id": item["id"]})
    for member in (chair, d1, d2):
        await member.ok("attendance:check_in", {"meeting_id": m, "mode": "in_person"})
    await thuky.ok("attendance:record", {"meeting_id": m, "user_id": await user_id(hopso, "daibieu3"),
                                         "status": "absent", "reason": "Đi công tác"})
    asked = await d1.ok("floor:request", {"meeting_id": m})
    await chair.ok("floor:grant", {"meeting_id": m, "request_id": asked["request_id"]})
    await chair.ok("floor:end", {"meeting_id": m})
    vote = await chair.ok("vote:open", {"meeting_id": m, "agenda_item_id": item["id"],
                                        "question": "Thông qua Kế hoạch chuyển đổi số năm 2026"})
    for member in (chair, d1, d2):
        await member.ok("vote:cast", {"meeting_id": m, "vote_id": vote["id"], "option": 0,
                                      "seq": 1})
    await chair.ok("vote:close", {"meeting_id": m, "vote_id": vote["id"]})
    status, _ = await thuky.http.call("PUT", f"/api/meetings/{m}/conclusions",
                                      {"text": CONCLUSIONS})
    assert status == 200
    assert (await d1.http.call("POST", f"/api/meetings/{m}/minutes"))[0] == 403

    status, first = await thuky.http.call("POST", f"/api/meetings/{m}/minutes")
    assert status == 201 and first["version"] == 1, first
    pdf = await download(d1, f"/api/meetings/{m}/minutes/latest.pdf")
    assert hashlib.sha256(pdf).hexdigest() == first["sha256"]
    words = pdf_text(pdf)
    for expected in ("CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", "Độc lập - Tự do - Hạnh phúc",
                     "BIÊN BẢN", "Hội nghị trực tuyến triển khai chuyển đổi số năm 2026",
                     "Chủ trì: Nguyễn Văn Hùng", "Thư ký: Trần Thị Lan",
                     "Hoàng Văn Nam (lý do: Đi công tác)",
                     "1. Kế hoạch chuyển đổi số năm 2026",
                     "Người trình bày: Sở Thông tin và Truyền thông", "- Lê Minh Tuấn:",
                     "KẾT QUẢ BIỂU QUYẾT", "Thông qua Kế hoạch chuyển đổi số năm 2026",
                     "Hình thức: biểu quyết công khai; tổng số đại biểu: 4; có mặt: 3; "
                     "tham gia biểu quyết: 3. Tỷ lệ tính trên tổng số đại biểu (4).",
                     "Tán thành: 3/4 đại biểu (75,00%)",
                     "Không tán thành: 0/4 đại biểu (0,00%)",
                     "Không biểu quyết: 0/4 đại biểu (0,00%)", "Kết quả: Thông qua.",
                     CONCLUSIONS):
        assert expected in words, expected

    status, second = await chair.http.call("POST", f"/api/meetings/{m}/minutes")
    assert status == 201 and second["version"] == 2
    _, listed = await d2.http.call("GET", f"/api/meetings/{m}/minutes")
    assert [v["version"] for v in listed["versions"]] == [1, 2]
    assert await download(d2, f"/api/meetings/{m}/minutes/1.pdf") == pdf  # kept as it was
    outsider = await hopso.login("quantri")
    assert (await outsider.call("GET", f"/api/meetings/{m}/minutes/latest.pdf"))[0] == 404
    assert (await d1.http.call("GET", f"/api/meetings/{m}/minutes/9.pdf"))[0] == 404

    status, audit = await chair.http.call("GET", f"/api/meetings/{m}/audit")
    assert status == 200 and audit["chain"]["ok"], audit["chain"]
    kinds = [e["kind"] for e in audit["entries"]]
    for kind in ("agenda_changed", "current_item", "checked_in", "attendance_recorded",
                 "floor_requested", "floor_granted", "floor_ended", "vote_opened",
                 "ballot_cast", "vote_closed", "conclusions", "minutes_generated"):
        assert kind in kinds, kind
    generated = [e for e in audit["entries"] if e["kind"] == "minutes_generated"]
    assert generated[0]["data"]["sha256"] == first["sha256"]
    assert generated[1]["hash"] == second["audit_hash"]
    assert (await d1.http.call("GET", f"/api/meetings/{m}/audit"))[0] == 403
    await close_all(people)


async def user_id(h: Harness, name: str) -> int:
    from rooms.users import find_user
    from server.core import keys
    async with h.server.app[keys.DB].session() as s:
        user = await find_user(s, name)
        assert user and user.id
        return user.id


async def download(member: object, path: str) -> bytes:
    http = member.http  # type: ignore[attr-defined]
    async with http.session.get(http.base + path) as r:
        assert r.status == 200 and r.content_type == "application/pdf", r.status
        return await r.read()
