"""Documents and agenda items only ever reference each other within one meeting.

Issue 11, finding 12: an agenda item accepted a document of another meeting (or no document
at all), and a document's agenda_item_id could name another meeting's item. Every route
that links the two checks the reference before it writes anything, and answers 404
not_found in the documented shape (an item or document of another meeting is not found,
never revealed); ids beyond the database's INTEGER are 400/404, never 500.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import func, select

from documents.db_models import Document
from rooms.procedure_models import AgendaDocument
from server.core import keys
from server.documents.keys import DOCUMENTS
from tests.conftest import Client, Harness
from tests.server.documents_support import demo_meeting_id, make_pdf, upload, wait_ready

HUGE = 2**63


@dataclass
class Two:
    """Two meetings the same secretary manages, each with an agenda item and a document."""

    secretary: Client
    meetings: tuple[int, int]
    items: tuple[int, int]
    documents: tuple[int, int]


async def two_meetings(hopso: Harness, tmp_path: Path) -> Two:
    secretary = await hopso.login("thuky")
    first = await demo_meeting_id(hopso)
    status, other = await secretary.call("POST", "/api/meetings", {
        "title": "Họp chuyên đề chuyển đổi số", "unit_id": secretary.user["unit_id"],
        "starts_at": "2026-12-01T08:00:00+07:00"})
    assert status == 201, other
    items, documents = [], []
    for n, meeting in enumerate((first, other["id"])):
        status, item = await secretary.call("POST", f"/api/meetings/{meeting}/agenda",
                                            {"title": f"Báo cáo {n}"})
        assert status == 201, item
        items.append(item["id"])
        status, doc = await upload(secretary, meeting, make_pdf(tmp_path, 1, f"m{n}.pdf"),
                                   title=f"Tài liệu {n}")
        assert status == 202, doc
        documents.append(doc["id"])
    return Two(secretary, (first, other["id"]), (items[0], items[1]),
               (documents[0], documents[1]))


def assert_error(status: int, body: Any, expected: int, code: str) -> None:
    assert status == expected and set(body) == {"error"}, (status, body)
    assert body["error"]["code"] == code and body["error"]["message"], body


async def links(hopso: Harness) -> int:
    async with hopso.server.app[keys.DB].session() as s:
        return (await s.exec(select(func.count()).select_from(AgendaDocument))).one()


async def test_an_agenda_item_takes_only_documents_of_its_meeting(
    hopso: Harness, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    two = await two_meetings(hopso, tmp_path)
    m = two.meetings[0]
    path = f"/api/meetings/{m}/agenda/{two.items[0]}/documents"
    for document_id, status, code in ((two.documents[1], 404, "not_found"),  # other meeting
                                      (999_999, 404, "not_found"),  # missing
                                      (0, 404, "not_found"), (-1, 404, "not_found"),
                                      (HUGE, 400, "invalid"), (2**31, 400, "invalid")):
        answer, body = await two.secretary.call("POST", path, {"document_id": document_id})
        assert_error(answer, body, status, code)
    for bad in (f"/api/meetings/{m}/agenda/{two.items[1]}/documents",  # other meeting's item
                f"/api/meetings/{m}/agenda/{HUGE}/documents",
                f"/api/meetings/{m}/agenda/999999/documents"):
        answer, body = await two.secretary.call("POST", bad, {"document_id": two.documents[0]})
        assert_error(answer, body, 404, "not_found")
    assert await links(hopso) == 0
    _, view = await two.secretary.call("GET", f"/api/meetings/{m}/agenda")
    assert [i["documents"] for i in view["items"]] == [[]]
    # its own meeting's document is attached (and the detach route checks the same way)
    answer, body = await two.secretary.call("POST", path, {"document_id": two.documents[0]})
    assert answer == 201 and body["document_id"] == two.documents[0], body
    for document_id in (two.documents[1], HUGE):
        answer, body = await two.secretary.call("DELETE", f"{path}/{document_id}")
        assert_error(answer, body, 404, "not_found")
    assert await links(hopso) == 1
    assert "Traceback" not in caplog.text


async def test_a_document_names_only_an_item_of_its_meeting(
    hopso: Harness, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    two = await two_meetings(hopso, tmp_path)
    doc = f"/api/documents/{two.documents[0]}"
    # Processed first: its end stamps updated_at, which the refusals below must not touch.
    # Then read afresh: the read that saw processing end may hold the document row from
    # before that commit beside the version rows from after it (read committed).
    await wait_ready(hopso, two.documents[0])
    _, before = await two.secretary.call("GET", doc)
    for item, status, code in ((two.items[1], 404, "not_found"),  # other meeting's item
                               (999_999, 404, "not_found"), (0, 404, "not_found"),
                               (HUGE, 400, "invalid")):
        answer, body = await two.secretary.call("PATCH", doc, {"agenda_item_id": item,
                                                               "title": "Đã đổi tên"})
        assert_error(answer, body, status, code)
    _, after = await two.secretary.call("GET", doc)
    assert after["agenda_item_id"] is None and after["title"] == before["title"]
    assert after["updated_at"] == before["updated_at"]
    # a removed item is gone for documents too
    m = two.meetings[0]
    _, spare = await two.secretary.call("POST", f"/api/meetings/{m}/agenda", {"title": "Tạm"})
    assert (await two.secretary.call("DELETE", f"/api/meetings/{m}/agenda/{spare['id']}"))[0] == 200
    answer, body = await two.secretary.call("PATCH", doc, {"agenda_item_id": spare["id"]})
    assert_error(answer, body, 404, "not_found")
    # its own meeting's item, then none
    answer, body = await two.secretary.call("PATCH", doc, {"agenda_item_id": two.items[0]})
    assert answer == 200 and body["agenda_item_id"] == two.items[0], body
    answer, body = await two.secretary.call("PATCH", doc, {"agenda_item_id": None})
    assert answer == 200 and body["agenda_item_id"] is None, body
    assert "Traceback" not in caplog.text


async def test_an_upload_names_only_an_item_of_its_meeting(
    hopso: Harness, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    two = await two_meetings(hopso, tmp_path)
    m = two.meetings[0]
    root = hopso.server.app[DOCUMENTS].store.root

    def stored() -> list[Path]:  # blobs and upload temp files (not the pages being rendered)
        return sorted(p for d in ("blobs", "tmp") for p in (root / d).rglob("*") if p.is_file())

    before = stored()
    async with hopso.server.app[keys.DB].session() as s:
        count = (await s.exec(select(func.count()).select_from(Document))).one()
    pdf = make_pdf(tmp_path, 1, "new.pdf")
    for item, status, code in ((two.items[1], 404, "not_found"), (999_999, 404, "not_found"),
                               (0, 404, "not_found"), (HUGE, 400, "invalid")):
        answer, body = await upload(two.secretary, m, pdf, agenda_item_id=str(item))
        assert_error(answer, body, status, code)
    async with hopso.server.app[keys.DB].session() as s:
        assert (await s.exec(select(func.count()).select_from(Document))).one() == count
    assert before and stored() == before  # no new blob, no temp file left
    answer, body = await upload(two.secretary, m, pdf, agenda_item_id=str(two.items[0]))
    assert answer == 202 and body["agenda_item_id"] == two.items[0], body
    assert "Traceback" not in caplog.text
