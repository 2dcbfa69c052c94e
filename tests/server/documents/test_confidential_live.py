"""Confidentiality follows the document (issue 17): what a browser may keep, what open viewers
are told at once, what the access log holds; and the bad input of versions and edits (another
meeting, a withdrawn document, a delegate, a stale tab): a clear error, nothing changed."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pymupdf
from sqlalchemy import text

from documents import fonts
from server.core import keys
from server.documents.keys import DOCUMENTS
from tests.conftest import Client, Harness
from tests.documents import corpus
from tests.server.documents_support import (
    Listener,
    demo_meeting_id,
    fetch,
    ink_op,
    make_pdf,
    upload,
    upload_ready,
    wait_ready,
)


async def _access(secretary: Client, document_id: int) -> list[dict[str, Any]]:
    status, log = await secretary.call("GET", f"/api/documents/{document_id}/access")
    assert status == 200, log
    return log["entries"]  # type: ignore[no-any-return]


async def _versions(secretary: Client, document_id: int) -> list[int]:
    status, details = await secretary.call("GET", f"/api/documents/{document_id}")
    assert status == 200, details
    return [v["version"] for v in details["versions"]]


async def test_content_is_revalidated_and_a_confidential_change_reaches_open_viewers(
        hopso_sqlite: Harness, tmp_path: Path) -> None:
    hopso = hopso_sqlite
    meeting_id = await demo_meeting_id(hopso)
    doc = await upload_ready(hopso, meeting_id, make_pdf(tmp_path, pages=2))
    delegate = await hopso.login("daibieu")
    viewer = await Listener.open(hopso, delegate, meeting_id)
    ack = await viewer.call("document:subscribe", {"document_id": doc["id"]})
    assert ack["ok"], ack

    # Not confidential yet: a browser may keep the PDF and pages, but must ask each time
    # (a day-long max-age let a document made confidential be read, unlogged, from cache).
    for path in ("/pdf", "/pdf?version=1", "/pages/0?version=1", "/thumbs/0?version=1"):
        status, _, _, headers = await fetch(delegate, f"/api/documents/{doc['id']}{path}")
        assert status == 200 and headers["Cache-Control"] == "private, no-cache", (path, headers)
        assert "Hopso-Confidential" not in headers

    secretary = await hopso.login("thuky")
    status, body = await secretary.call("PATCH", f"/api/documents/{doc['id']}",
                                        {"confidential": True, "version": 1})
    assert status == 200 and body["confidential"], body
    pushed = await viewer.wait_for("document:confidential", timeout=5)
    assert pushed == {"document_id": doc["id"], "meeting_id": meeting_id, "confidential": True,
                      "version": 1}

    status, _, body_bytes, _ = await fetch(delegate, f"/api/documents/{doc['id']}/pdf?version=1")
    assert status == 403 and b"view_only" in body_bytes
    for _ in range(2):  # each read reaches the server, and the log
        status, kind, _, headers = await fetch(delegate,
                                               f"/api/documents/{doc['id']}/pages/1?version=1")
        assert status == 200 and kind == "image/jpeg"
        assert headers["Cache-Control"] == "no-store" and headers["Hopso-Confidential"] == "1"
    status, _, _, headers = await fetch(delegate, f"/api/documents/{doc['id']}")
    assert status == 200 and headers["Hopso-Confidential"] == "1"
    status, _, _, headers = await fetch(delegate, f"/api/documents/{doc['id']}/export")
    assert status == 200 and headers["Hopso-Confidential"] == "1"
    entries = [e for e in await _access(secretary, doc["id"]) if e["name"] == "Lê Minh Tuấn"]
    kinds = [(e["kind"], e["page"]) for e in entries]
    assert kinds.count(("page", 1)) == 2 and ("pdf", None) in kinds and ("export", None) in kinds

    # And back: the viewers are told, the PDF can be read again.
    status, body = await secretary.call("PATCH", f"/api/documents/{doc['id']}",
                                        {"confidential": False})
    assert status == 200 and not body["confidential"]
    await viewer.wait_for("document:confidential", lambda e: e["confidential"] is False,
                          timeout=5)
    status, _, _, _ = await fetch(delegate, f"/api/documents/{doc['id']}/pdf")
    assert status == 200


async def _version(client: Client, document_id: int, data: bytes, **fields: str
                   ) -> tuple[int, Any]:
    """POST a new version with the form fields a documents page sends."""
    form = aiohttp.FormData()
    for key, value in fields.items():
        form.add_field(key, value)
    form.add_field("file", data, filename="v.pdf", content_type="application/octet-stream")
    async with client.session.post(f"{client.base}/api/documents/{document_id}/versions",
                                   data=form, headers={"X-CSRF-Token": client.csrf}) as r:
        return r.status, await r.json()


async def _other_meeting(hopso: Harness, secretary: Client) -> int:
    """A second meeting the secretary also serves."""
    chair = await hopso.login("chutri")
    status, meetings = await chair.call("GET", "/api/meetings")
    assert status == 200, meetings
    first = meetings["meetings"][0]
    status, made = await chair.call("POST", "/api/meetings", {
        "title": "Họp chuyên đề", "unit_id": first["unit_id"],
        "starts_at": (datetime.now(UTC) + timedelta(hours=2)).isoformat()})
    assert status == 201, made
    status, added = await chair.call("POST", f"/api/meetings/{made['id']}/members",
                                     {"role": "secretary", "user_id": secretary.user["id"]})
    assert status == 201, added
    return made["id"]  # type: ignore[no-any-return]


async def test_bad_input_changes_nothing(hopso_sqlite: Harness, tmp_path: Path) -> None:
    hopso = hopso_sqlite
    meeting_id = await demo_meeting_id(hopso)
    doc = await upload_ready(hopso, meeting_id, make_pdf(tmp_path, pages=2, name="a.pdf"))
    secretary = await hopso.login("thuky")
    delegate = await hopso.login("daibieu")
    path = f"/api/documents/{doc['id']}/versions"
    new = make_pdf(tmp_path, pages=3, name="b.pdf")

    # A delegate cannot change confidentiality.
    status, body = await delegate.call("PATCH", f"/api/documents/{doc['id']}",
                                       {"confidential": True})
    assert status == 403 and body["error"]["code"] == "forbidden", body
    # A stale tab (it shows version 2; the document is at 1) changes nothing.
    status, body = await secretary.call("PATCH", f"/api/documents/{doc['id']}",
                                        {"confidential": True, "version": 2})
    assert status == 409 and body["error"]["code"] == "stale_version", body
    status, body = await secretary.call("POST", f"/api/documents/{doc['id']}/publish",
                                        {"published": False, "version": 2})
    assert status == 409 and body["error"]["code"] == "stale_version", body
    status, details = await secretary.call("GET", f"/api/documents/{doc['id']}")
    assert not details["confidential"] and details["published"]

    # A version upload from another meeting's page, or from a stale tab.
    other = await _other_meeting(hopso, secretary)
    status, body = await _version(secretary, doc["id"], new, meeting_id=str(other))
    assert status == 409 and body["error"]["code"] == "wrong_meeting", body
    status, body = await _version(secretary, doc["id"], new, base_version="7")
    assert status == 409 and body["error"]["code"] == "stale_version", body
    status, body = await _version(secretary, doc["id"], new, base_version="x")
    assert status == 400, body
    assert await _versions(secretary, doc["id"]) == [1]

    # A withdrawn document takes no new version until it is published again.
    status, body = await secretary.call("POST", f"/api/documents/{doc['id']}/publish",
                                        {"published": False, "version": 1})
    assert status == 200 and not body["published"]
    status, body = await upload(secretary, meeting_id, new, path=path)
    assert status == 409 and body["error"]["code"] == "withdrawn", body
    assert await _versions(secretary, doc["id"]) == [1]
    status, body = await secretary.call("POST", f"/api/documents/{doc['id']}/publish",
                                        {"published": True})
    assert status == 200
    status, body = await _version(secretary, doc["id"], new, meeting_id=str(meeting_id),
                                  base_version="1")
    assert status == 202, body
    # A draft (never published) takes new versions.
    draft = await upload_ready(hopso, meeting_id, make_pdf(tmp_path, pages=1, name="c.pdf"),
                               publish=False)
    status, body = await upload(secretary, meeting_id, make_pdf(tmp_path, pages=2, name="d.pdf"),
                                path=f"/api/documents/{draft['id']}/versions")
    assert status == 202, body


def _edited() -> bytes:
    """The three pages of make_pdf with page 2's text changed, and a fourth page added."""
    doc = pymupdf.open()
    for i in range(4):
        page = doc.new_page()
        font = fonts.insert_font(page)
        lines = [*corpus.VIETNAMESE_LINES, f"Trang số {i + 1}"] if i < 3 else ["Phụ lục"]
        if i == 1:
            lines.append("Sửa đổi: bổ sung mục mới")
        for n, line in enumerate(lines):
            page.insert_text((72, 72 + 20 * n), line, fontname=font, fontsize=12)
    doc.subset_fonts()
    return doc.tobytes(garbage=3, deflate=True)


async def test_changes_of_a_version_page_by_page(hopso_sqlite: Harness, tmp_path: Path) -> None:
    hopso = hopso_sqlite
    meeting_id = await demo_meeting_id(hopso)
    doc = await upload_ready(hopso, meeting_id, make_pdf(tmp_path, pages=3, name="v1.pdf"))
    delegate = await Listener.open(hopso, await hopso.login("daibieu"), meeting_id)
    assert (await delegate.call("document:subscribe", {"document_id": doc["id"]}))["ok"]
    for op in (ink_op(page=0), ink_op(page=1), ink_op(page=1)):
        ack = await delegate.call("annotation:op", {"document_id": doc["id"], "version": 1,
                                                    "op": op})
        assert ack["ok"], ack
    secretary = await hopso.login("thuky")
    status, body = await secretary.call("GET", f"/api/documents/{doc['id']}/versions/1/changes")
    assert status == 404 and body["error"]["code"] == "no_previous"
    status, body = await upload(secretary, meeting_id, _edited(),
                                path=f"/api/documents/{doc['id']}/versions", base_version="1")
    assert status == 202, body
    await delegate.wait_for("document:version", lambda e: e["version"] == 2)
    await wait_ready(hopso, doc["id"])
    client = await hopso.login("daibieu")
    status, body = await client.call("GET", f"/api/documents/{doc['id']}/versions/2/changes")
    assert status == 200, body
    assert body["previous_version"] == 1 and body["removed"] == []
    assert [(p["page"], p["change"], p["flagged"]) for p in body["pages"]] == [
        (0, "same", 0), (1, "changed", 2), (2, "same", 0), (3, "added", 0)]
    status, body = await client.call("GET", f"/api/documents/{doc['id']}/versions/9/changes")
    assert status == 404

    # A stroke drawn on version 1 that arrives after version 2 (in flight, or queued offline)
    # lands on the page with the same text; on a changed page it is refused, as is any other
    # op on version 1, and nothing is stored.
    late = ink_op(page=2)
    ack = await delegate.call("annotation:op", {"document_id": doc["id"], "version": 1,
                                                "op": late})
    assert ack["ok"], ack
    assert ack["result"]["version"] == 2 and ack["result"]["page"] == 2
    for op in (ink_op(page=1), {"op_id": str(uuid.uuid4()), "type": "delete", "page": 2,
                                "ids": [late["annotation"]["id"]]}):
        ack = await delegate.call("annotation:op", {"document_id": doc["id"], "version": 1,
                                                    "op": op})
        assert ack["error"]["code"] == "stale_version", ack
    snap = await delegate.call("annotation:snapshot", {"document_id": doc["id"], "version": 2})
    by_page = {p["page"]: [a["id"] for a in p["annotations"]] for p in snap["result"]["pages"]}
    assert by_page.get(2) == [late["annotation"]["id"]] and len(by_page[1]) == 2


async def test_favicon(hopso_sqlite: Harness) -> None:
    client = hopso_sqlite.anonymous()
    status, kind, body, _ = await fetch(client, "/favicon.ico")
    assert status == 200 and kind == "image/x-icon" and body[:4] == b"\0\0\1\0"


async def _rows(hopso: Harness, document_id: int) -> list[tuple[str, int | None]]:
    """The access log's rows as the database holds them now (no flush asked)."""
    async with hopso.server.app[keys.DB].engine.connect() as conn:
        rows = await conn.execute(text("SELECT kind, page FROM documentaccess "
                                       "WHERE document_id = :d ORDER BY id"), {"d": document_id})
        return [(r[0], r[1]) for r in rows]


async def test_a_confidential_read_is_logged_before_it_is_served(
        hopso_sqlite: Harness, tmp_path: Path) -> None:
    """A buffered row is lost with the process (a kill, a crash) or a failed write: the read
    of a confidential document is written before its content leaves, and when it cannot be
    written nothing is served."""
    hopso = hopso_sqlite
    meeting_id = await demo_meeting_id(hopso)
    doc = await upload_ready(hopso, meeting_id, make_pdf(tmp_path, pages=2))
    plain = await upload_ready(hopso, meeting_id, make_pdf(tmp_path, pages=1, name="khac.pdf"))
    secretary, delegate = await hopso.login("thuky"), await hopso.login("daibieu")
    status, body = await secretary.call("PATCH", f"/api/documents/{doc['id']}",
                                        {"confidential": True})
    assert status == 200 and body["confidential"], body
    # Reads from before the switch (the upload's own) are buffered, and the 1 s flush could
    # land them among the rows below: written now.
    await hopso.server.app[DOCUMENTS].access.flush()
    before = await _rows(hopso, doc["id"])
    for path in ("/pages/1", "/thumbs/0", "/search?q=Trang"):
        status, _, _, headers = await fetch(delegate, f"/api/documents/{doc['id']}{path}")
        assert status == 200, path
        # Its text too (search snippets) is kept by no browser cache.
        assert headers["Cache-Control"] == "no-store" and headers["Hopso-Confidential"] == "1"
    status, _, found, headers = await fetch(
        delegate, f"/api/meetings/{meeting_id}/documents/search?q=Trang")
    assert status == 200 and str(doc["id"]).encode() in found
    assert headers["Cache-Control"] == "no-store" and headers["Hopso-Confidential"] == "1"
    # In the database as each answer arrived: the 1 s flush has not had to run.
    assert (await _rows(hopso, doc["id"]))[len(before):] == [
        ("page", 1), ("thumb", 0), ("search", None), ("search", None)]
    status, _, _, headers = await fetch(delegate, f"/api/documents/{plain['id']}/search?q=Trang")
    assert status == 200 and "no-store" not in headers.get("Cache-Control", "")

    db = hopso.server.app[keys.DB]
    async with db.engine.begin() as conn:  # the log cannot be written (a full disk, say)
        await conn.execute(text("ALTER TABLE documentaccess RENAME TO documentaccess_away"))
    try:
        for path in ("/pages/0", "/thumbs/1", "/export", "/search?q=Trang"):
            status, kind, content, _ = await fetch(delegate, f"/api/documents/{doc['id']}{path}")
            assert status == 503 and kind == "application/json", (path, status)
            assert b"not_logged" in content and b"\xff\xd8" not in content[:2], path
        status, _, _, _ = await fetch(delegate, f"/api/documents/{plain['id']}/pages/0")
        assert status == 200  # an ordinary document's read is buffered as before
    finally:
        async with db.engine.begin() as conn:
            await conn.execute(text("ALTER TABLE documentaccess_away RENAME TO documentaccess"))
    status, _, _, _ = await fetch(delegate, f"/api/documents/{doc['id']}/pages/0")
    assert status == 200
    assert (await _rows(hopso, doc["id"]))[-1] == ("page", 0)
