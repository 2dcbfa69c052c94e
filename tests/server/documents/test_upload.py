"""Uploading documents: processing progress, listing, access and bad input."""

from __future__ import annotations

from pathlib import Path

import pymupdf

from tests.conftest import Client, Harness
from tests.server.documents_support import (
    Listener,
    demo_meeting_id,
    fetch,
    make_pdf,
    upload,
    wait_ready,
)


async def test_secretary_upload_reports_progress_until_ready(hopso: Harness, tmp_path: Path) -> None:
    meeting_id = await demo_meeting_id(hopso)
    secretary = await hopso.login("thuky")
    listener = await Listener.open(hopso, secretary)
    chair = await Listener.open(hopso, await hopso.login("chutri"), meeting_id)
    delegate = await Listener.open(hopso, await hopso.login("daibieu"), meeting_id)
    status, item = await secretary.call("POST", f"/api/meetings/{meeting_id}/agenda",
                                        {"title": "Thông qua biên bản"})
    assert status == 201, item
    status, doc = await upload(secretary, meeting_id, make_pdf(tmp_path, pages=4),
                               title="Biên bản họp", agenda_item_id=str(item["id"]))
    assert status == 202, doc
    assert doc["status"] == "processing" and doc["title"] == "Biên bản họp"
    assert doc["filename"] == "Biên bản.pdf" and doc["agenda_item_id"] == item["id"]
    first = await listener.wait_for("document:progress", lambda e: e["page"] == 0)
    assert first["document_id"] == doc["id"] and first["total"] == 4
    ready = await listener.wait_for("document:progress", lambda e: e["stage"].startswith("ready"))
    assert ready["stage"] == "ready" and ready["done"] == 4
    stages = [e["stage"] for e in listener.of("document:progress")]
    assert stages[0] == "validating" and "rendering" in stages
    await chair.wait_for("document:progress", lambda e: e["stage"] == "ready")
    assert not delegate.of("document:progress") and not delegate.of("document:updated")
    await listener.close()

    status, details = await secretary.call("GET", f"/api/documents/{doc['id']}")
    assert status == 200 and details["status"] == "ready" and details["page_count"] == 4
    assert details["page_sizes"][0] == [595.0, 842.0] and details["has_pdf"]
    assert details["outline"][0] == {"level": 1, "title": "Mục 1: Biên bản", "page": 0}
    status, kind, body, _ = await fetch(secretary, f"/api/documents/{doc['id']}/pdf")
    assert status == 200 and kind == "application/pdf"
    assert pymupdf.open("pdf", body).page_count == 4
    status, kind, body, _ = await fetch(secretary, f"/api/documents/{doc['id']}/pages/3")
    assert status == 200 and kind == "image/jpeg" and body[:3] == b"\xff\xd8\xff"
    status, _, _, _ = await fetch(secretary, f"/api/documents/{doc['id']}/pages/4")
    assert status == 404
    status, kind, body, _ = await fetch(secretary, f"/api/documents/{doc['id']}/thumbs/0")
    assert status == 200 and kind == "image/jpeg"
    status, body = await secretary.call("GET", f"/api/documents/{doc['id']}/search?q=ke hoach dau tu")
    assert status == 200 and len(body["hits"]) == 4
    hit = body["hits"][0]
    assert hit["snippet"][hit["start"]:hit["end"]] == "kế hoạch đầu tư"
    status, body = await secretary.call("GET", f"/api/meetings/{meeting_id}/documents/search?q=TRANG SO 3")
    assert [(h["document_id"], h["page"]) for h in body["hits"]] == [(doc["id"], 2)]


async def test_members_see_published_documents_only(hopso: Harness, tmp_path: Path) -> None:
    meeting_id = await demo_meeting_id(hopso)
    secretary, delegate = await hopso.login("thuky"), await hopso.login("daibieu")
    status, doc = await upload(secretary, meeting_id, make_pdf(tmp_path, pages=1))
    assert status == 202
    listing = f"/api/meetings/{meeting_id}/documents"
    status, body = await delegate.call("GET", listing)
    assert status == 200 and body == {"groups": []}
    status, _ = await delegate.call("GET", f"/api/documents/{doc['id']}")
    assert status == 404
    await wait_ready(hopso, doc["id"])
    listener = await Listener.open(hopso, delegate, meeting_id)
    status, body = await secretary.call("POST", f"/api/documents/{doc['id']}/publish",
                                        {"published": True})
    assert status == 200 and body["published"]
    updated = await listener.wait_for("document:updated")
    assert updated["id"] == doc["id"]
    status, body = await delegate.call("GET", listing)
    assert [d["id"] for g in body["groups"] for d in g["documents"]] == [doc["id"]]
    status, _ = await delegate.call("POST", f"/api/documents/{doc['id']}/publish",
                                    {"published": False})
    assert status == 403
    await listener.close()


async def test_other_meetings_documents_are_not_found(hopso: Harness, tmp_path: Path) -> None:
    meeting_id = await demo_meeting_id(hopso)
    secretary = await hopso.login("thuky")
    status, doc = await upload(secretary, meeting_id, make_pdf(tmp_path, pages=1))
    assert status == 202
    await wait_ready(hopso, doc["id"])
    await secretary.call("POST", f"/api/documents/{doc['id']}/publish", {"published": True})
    guest = await member_of_another_meeting(hopso)
    for outsider in (await hopso.login("quantri"), guest):  # admin: no member at all
        for path in ("", "/pdf", "/pages/0", "/thumbs/0", "/search?q=bien", "/export",
                     "/access"):
            status, body = await outsider.call("GET", f"/api/documents/{doc['id']}{path}")
            assert status == 404 and body["error"]["code"] == "not_found", (path, body)
        status, _ = await outsider.call("POST", f"/api/documents/{doc['id']}/publish",
                                        {"published": False})
        assert status == 404
        status, _ = await outsider.call("GET", f"/api/meetings/{meeting_id}/documents")
        assert status == 404


async def member_of_another_meeting(hopso: Harness) -> Client:
    """A delegate of a second meeting who is not a member of the demo meeting."""
    admin, chair = await hopso.login("quantri"), await hopso.login("chutri")
    status, user = await admin.call("POST", "/api/users", {
        "username": "khach", "full_name": "Đại biểu khách", "password": "mat-khau-khach-1",
        "role": "delegate", "unit_id": 1})
    assert status == 201, user
    status, other = await chair.call("POST", "/api/meetings", {
        "title": "Họp khác", "unit_id": 1, "starts_at": "2026-12-01T08:00:00+07:00"})
    assert status == 201, other
    status, _ = await chair.call("POST", f"/api/meetings/{other['id']}/members",
                                 {"role": "delegate", "user_id": user["id"]})
    assert status == 201
    guest = hopso.anonymous()
    status, body = await guest.call("POST", "/api/login", {"username": "khach",
                                                           "password": "mat-khau-khach-1"})
    assert status == 200, body
    guest.csrf = body["csrf_token"]
    status, body = await guest.call("GET", f"/api/meetings/{other['id']}/documents")
    assert status == 200 and body == {"groups": []}
    return guest


async def test_bad_uploads_store_nothing(hopso_sqlite: Harness, tmp_path: Path) -> None:
    hopso = hopso_sqlite
    meeting_id = await demo_meeting_id(hopso)
    secretary, delegate = await hopso.login("thuky"), await hopso.login("daibieu")
    pdf = make_pdf(tmp_path, pages=1)
    status, body = await upload(delegate, meeting_id, pdf)
    assert status == 403
    status, body = await upload(secretary, meeting_id, b"MZ\x90\x00 not a pdf" * 100,
                                filename="tai-lieu.pdf")
    assert status == 415 and body["error"]["code"] == "not_pdf"
    assert body["error"]["message_vi"] == "Tệp không phải là tài liệu PDF."
    status, body = await upload(secretary, meeting_id, b"", filename="empty.pdf")
    assert status == 400 and body["error"]["code"] == "empty"
    status, body = await upload(secretary, meeting_id, pdf, confidential="maybe")
    assert status == 400 and body["error"]["message"].startswith("confidential")
    status, body = await upload(secretary, meeting_id, pdf, colour="red")
    assert status == 400 and body["error"]["code"] == "invalid"
    status, body = await secretary.call("POST", f"/api/meetings/{meeting_id}/documents",
                                        {"file": "x"})
    assert status == 400 and body["error"]["code"] == "bad_content_type"
    blobs = list((hopso.settings.data_dir / "documents" / "blobs").rglob("*"))
    assert not [b for b in blobs if b.is_file()]
    assert not list((hopso.settings.data_dir / "documents" / "tmp").iterdir())
    status, body = await secretary.call("GET", f"/api/meetings/{meeting_id}/documents")
    assert body == {"groups": []}
    status, doc = await upload(secretary, meeting_id, pdf)
    assert status == 202
    status, body = await upload(secretary, meeting_id, pdf, filename="again.pdf")
    assert status == 409 and body["error"] == {**body["error"], "code": "duplicate",
                                                "document_id": doc["id"]}
    await wait_ready(hopso, doc["id"])


async def test_oversized_upload_is_refused_while_streaming(tmp_path: Path) -> None:
    from tests.conftest import start_harness

    harness = await start_harness(tmp_path, None, max_upload_bytes=64 * 1024)
    try:
        meeting_id = await demo_meeting_id(harness)
        secretary = await harness.login("thuky")
        big = make_pdf(tmp_path, pages=1) + b"%" * (200 * 1024)
        status, body = await upload(secretary, meeting_id, big)
        assert status == 413 and body["error"]["code"] == "too_large"
        blobs = [b for b in (harness.settings.data_dir / "documents").rglob("*") if b.is_file()]
        assert blobs == []
    finally:
        await harness.close()
        await harness.server.close()


def test_generated_pdf_has_pages(tmp_path: Path) -> None:
    assert pymupdf.open("pdf", make_pdf(tmp_path, pages=2)).page_count == 2
