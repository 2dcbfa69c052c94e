"""A new version of a document: annotations carried over (flagged where the page changed),
viewers told live, ops on the old version refused."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pymupdf

from documents import catalog, fonts
from documents.db_models import Document, DocumentVersion
from server.core import keys
from tests.conftest import Harness
from tests.server.documents_support import (
    Listener,
    demo_meeting_id,
    ink_op,
    make_pdf,
    upload,
    upload_ready,
    wait_ready,
)


def _edited(tmp: Path) -> bytes:
    """The same three pages, with page 2's text changed."""
    doc = pymupdf.open("pdf", make_pdf(tmp, pages=3, name="v1.pdf"))
    page = doc[1]
    page.insert_text((72, 400), "Sửa đổi: bổ sung mục mới", fontname=fonts.insert_font(page),
                     fontsize=12)
    return doc.tobytes()


async def test_new_version_carries_annotations_and_notifies_viewers(hopso: Harness,
                                                                    tmp_path: Path) -> None:
    meeting_id = await demo_meeting_id(hopso)
    doc = await upload_ready(hopso, meeting_id, make_pdf(tmp_path, pages=3, name="v1.pdf"))
    delegate = await Listener.open(hopso, await hopso.login("daibieu"), meeting_id)
    ack = await delegate.call("document:subscribe", {"document_id": doc["id"]})
    assert ack["ok"]
    kept, flagged = ink_op(page=0, visibility="meeting"), ink_op(page=1)
    for op in (kept, flagged):
        ack = await delegate.call("annotation:op", {"document_id": doc["id"], "version": 1,
                                                    "op": op})
        assert ack["ok"], ack

    secretary = await hopso.login("thuky")
    status, body = await upload(secretary, meeting_id, _edited(tmp_path),
                                path=f"/api/documents/{doc['id']}/versions")
    assert status == 202, body
    assert body["version"] == 1 and body["pending_version"]["version"] == 2
    status, again = await upload(secretary, meeting_id, make_pdf(tmp_path, pages=1, name="x.pdf"),
                                 path=f"/api/documents/{doc['id']}/versions")
    assert status in (202, 409)  # 409 processing unless v2 already finished
    if status == 409:
        assert again["error"]["code"] == "processing"
    notice = await delegate.wait_for("document:version", lambda e: e["version"] == 2)
    assert notice == {"document_id": doc["id"], "meeting_id": meeting_id, "version": 2,
                      "previous_version": 1}
    done = await wait_ready(hopso, doc["id"])
    assert done["version"] >= 2

    snap = await delegate.call("annotation:snapshot", {"document_id": doc["id"], "version": 2})
    pages = {p["page"]: p["annotations"] for p in snap["result"]["pages"]}
    assert [a["id"] for a in pages[0]] == [kept["annotation"]["id"]]
    assert pages[0][0]["flagged"] is False
    assert pages[1][0]["id"] == flagged["annotation"]["id"]
    assert pages[1][0]["flagged"] and pages[1][0]["flag_reason"] == "page_text_changed"
    ack = await delegate.call("annotation:op", {"document_id": doc["id"], "version": 1,
                                                "op": {"op_id": str(uuid.uuid4()),
                                                       "type": "delete", "page": 0,
                                                       "ids": [kept["annotation"]["id"]]}})
    assert ack["error"]["code"] == "stale_version"  # only a new stroke is ever carried over
    ack = await delegate.call("annotation:op", {"document_id": doc["id"], "version": 2,
                                                "op": kept})
    assert ack["error"]["code"] == "already_exists"  # carried over with its id
    reused = {**ink_op(page=2), "op_id": kept["op_id"]}
    ack = await delegate.call("annotation:op", {"document_id": doc["id"], "version": 2,
                                                "op": reused})
    assert ack["error"]["code"] == "stale_version"  # that op_id was used on version 1
    ack = await delegate.call("annotation:op", {"document_id": doc["id"], "version": 2,
                                                "op": ink_op(page=2)})
    assert ack["ok"] and ack["result"]["seq"] == 1


async def _publish_versions(hopso: Harness, document_id: int, count: int) -> None:
    """New versions made current the way processing stores one: the version row and the
    document's current version in one transaction."""
    async with hopso.server.app[keys.DB].session() as s:
        first = await catalog.version(s, document_id, 1)
    for number in range(2, count + 2):
        async with hopso.server.app[keys.DB].session() as s:
            doc = await s.get(Document, document_id)
            assert doc is not None
            s.add(DocumentVersion(**first.model_dump(exclude={"id", "number"}), number=number))
            doc.version = number
            s.add(doc)
        await asyncio.sleep(0)


async def test_details_pair_the_document_with_its_versions_from_one_moment(
        hopso: Harness, tmp_path: Path) -> None:
    meeting_id = await demo_meeting_id(hopso)
    doc = await upload_ready(hopso, meeting_id, make_pdf(tmp_path, pages=1, name="v1.pdf"))
    delegate = await hopso.login("daibieu")
    writer = asyncio.create_task(_publish_versions(hopso, doc["id"], 60))
    answers = []
    while not writer.done():
        status, body = await delegate.call("GET", f"/api/documents/{doc['id']}")
        assert status == 200, body
        answers.append(body)
    await writer
    assert len(answers) >= 10
    for body in answers:
        # Every version here is ready and made current in the transaction that adds it: a
        # newer finished version beside an older current one pairs two moments.
        newest = max(v["version"] for v in body["versions"])
        assert (body["version"], body["pending_version"]) == (newest, None), body["versions"]
