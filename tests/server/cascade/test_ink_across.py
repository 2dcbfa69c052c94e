"""Shared ink across nodes (issue 13, items 2 and 6): ink shared with the meeting reaches
every node's tablets in order, both ways; private ink never leaves its author's node; ink
made while a ward's link is cut is stored (and acknowledged) at the ward, then delivered;
a child's forged or out-of-meeting ink is refused with a logged reason, nothing stored."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from documents.db_models import AnnotationOp
from server.core import keys
from tests.conftest import Harness
from tests.server.cascade.test_documents_across import another_meeting, member, mirrored_doc
from tests.server.cascade.tree import (
    Tree,
    cascaded_meeting,
    cut_link,
    restore_link,
    state,
    tree,
    until,
)
from tests.server.documents_support import Listener, fetch, ink_op, make_pdf, upload_ready


async def stored_ids(h: Harness) -> set[str]:
    """Every annotation id in node `h`'s stored ops."""
    async with h.server.app[keys.DB].session() as s:
        rows = (await s.exec(select(AnnotationOp))).all()
    return {e["annotation_id"] for r in rows for e in r.record["effects"]}


async def tablet(h: Harness, meeting_id: int, document_id: int, username: str) -> Listener:
    listener = await Listener.open(h, await h.login(username), meeting_id)
    ack = await listener.call("document:subscribe", {"document_id": document_id})
    assert ack["ok"], ack
    return listener


async def draw(listener: Listener, document_id: int, visibility: str) -> str:
    op = ink_op(page=1, visibility=visibility)
    ack = await listener.call("annotation:op", {"document_id": document_id, "version": 1,
                                                "op": op})
    assert ack["ok"], ack
    return str(op["annotation"]["id"])


async def setup(t: Tree, tmp_path: Path) -> tuple[int, int, int, dict[str, Any], Listener,
                                                  Listener]:
    _, meeting_id, _, city_id, ward_id = await cascaded_meeting(t)
    doc = await upload_ready(t.province, meeting_id, make_pdf(tmp_path, pages=3), title="Ink")
    ward_delegate = await member(t.ward, ward_id, "daibieu")
    mirror = await until(lambda: mirrored_doc(ward_delegate, ward_id, "Ink"), 20, "doc")

    async def processed() -> bool:
        _, body = await ward_delegate.call("GET", f"/api/documents/{mirror['id']}")
        return bool(body["has_pdf"])
    await until(processed, 30, "the whole document at the ward")
    province = await tablet(t.province, meeting_id, doc["id"], "daibieu")
    ward = await tablet(t.ward, ward_id, mirror["id"], "daibieu")
    return meeting_id, ward_id, city_id, {"owner": doc, "ward": mirror}, province, ward


def upserted(annotation_id: str) -> Any:
    return lambda e: any(a["id"] == annotation_id for a in e["event"]["upserts"])


async def test_shared_ink_crosses_both_ways_and_private_ink_stays_home(tmp_path: Path) -> None:
    async with tree(tmp_path) as t:
        _, _, _, docs, province, ward = await setup(t, tmp_path)
        owner_doc, ward_doc = docs["owner"]["id"], docs["ward"]["id"]
        # Down: the province delegate's shared stroke at the ward, as another's note.
        shared = await draw(province, owner_doc, "meeting")
        event = await ward.wait_for("annotation:event", upserted(shared), timeout=10)
        assert event["document_id"] == ward_doc and not event["own"]
        # Up: the ward delegate's shared stroke at the province (and the city).
        from_ward = await draw(ward, ward_doc, "meeting")
        event = await province.wait_for("annotation:event", upserted(from_ward), timeout=10)
        assert event["document_id"] == owner_doc
        await until(lambda: _has(t.city, from_ward), 10, "the ward's stroke at the city")
        # Private strokes: never anywhere else.
        private_here = await draw(province, owner_doc, "private")
        private_ward = await draw(ward, ward_doc, "private")
        presenters_only = await draw(ward, ward_doc, "presenter")
        marker = await draw(ward, ward_doc, "meeting")  # sent after them, in order
        await province.wait_for("annotation:event", upserted(marker), timeout=10)
        await until(lambda: _has(t.city, marker), 10, "the marker at the city")
        for h in (t.city, t.ward):
            assert private_here not in await stored_ids(h)
        for h in (t.city, t.province):
            ids = await stored_ids(h)
            assert private_ward not in ids and presenters_only not in ids
        assert not [e for e in ward.of("annotation:event") if upserted(private_here)(e)]
        # Taking a shared stroke back to private removes it elsewhere: only its id crosses.
        ack = await ward.call("annotation:op", {"document_id": ward_doc, "version": 1, "op": {
            "op_id": str(uuid.uuid4()), "type": "set_visibility", "page": 1,
            "ids": [from_ward], "visibility": "private"}})
        assert ack["ok"], ack
        await province.wait_for("annotation:event",
                                lambda e: from_ward in e["event"]["removed"], timeout=10)
        # Every node's snapshot agrees on the shared layer.
        snap = await province.call("annotation:snapshot", {"document_id": owner_doc,
                                                           "version": 1, "pages": [1]})
        owner_ids = {a["id"] for a in snap["result"]["pages"][0]["annotations"]}
        assert {shared, marker} <= owner_ids and from_ward not in owner_ids
        assert private_ward not in owner_ids


async def _has(h: Harness, annotation_id: str) -> bool:
    return annotation_id in await stored_ids(h)


async def test_ink_made_while_the_ward_is_cut_off_is_kept_and_delivered(tmp_path: Path) -> None:
    async with tree(tmp_path) as t:
        _, _, _, docs, province, ward = await setup(t, tmp_path)
        owner_doc, ward_doc = docs["owner"]["id"], docs["ward"]["id"]
        await cut_link(t.ward)
        # The ward's tablets go on reading and annotating what is at the ward.
        reader = await t.ward.login("daibieu")
        status, _ = await reader.call("GET", f"/api/documents/{ward_doc}")
        assert status == 200
        for path in ("pages/2", "pdf", "thumbs/1"):
            status, _, body, _ = await fetch(reader, f"/api/documents/{ward_doc}/{path}")
            assert status == 200 and body, path
        status, found = await reader.call(
            "GET", f"/api/documents/{ward_doc}/search?q=trang")
        assert status == 200 and found["hits"], found
        made = [await draw(ward, ward_doc, "meeting") for _ in range(5)]  # acked: stored here
        assert await state(t.ward).reports.pending_counts()
        restore_link(t.ward)
        for annotation_id in made:
            await province.wait_for("annotation:event", upserted(annotation_id), timeout=15)
        snap = await province.call("annotation:snapshot", {"document_id": owner_doc,
                                                           "version": 1, "pages": [1]})
        order = [a["id"] for a in snap["result"]["pages"][0]["annotations"]]
        assert [i for i in order if i in made] == made  # nothing lost, in order


async def test_forged_or_foreign_ink_from_a_child_is_refused_and_nothing_stored(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with tree(tmp_path) as t:
        meeting_id, ward_id, _, docs, _, ward_tablet = await setup(t, tmp_path)
        owner_doc = docs["owner"]["id"]
        # A shared stroke too large for a report (over 64 kB): kept at the ward, logged.
        huge = ink_op(page=1, visibility="meeting",
                      points=[[72 + i * 0.09, 100 + (i % 50)] for i in range(5000)])
        ack = await ward_tablet.call("annotation:op", {"document_id": docs["ward"]["id"],
                                                       "version": 1, "op": huge})
        assert ack["ok"], ack
        assert "does not cross nodes" in caplog.text
        ward = state(t.ward)
        annotation = ink_op(page=1, visibility="meeting")["annotation"]

        def data(**change: Any) -> dict[str, Any]:
            return {"document": owner_doc, "version": 1, "page": 1, "op": str(uuid.uuid4()),
                    "author": {"origin": "ward", "user": 3, "name": "Đại biểu"},
                    "items": [{"id": annotation["id"], "annotation": annotation}], **change}

        refused = {
            "another node's person": data(author={"origin": "city", "user": 1, "name": "x"}),
            "the owner's person": data(author={"origin": "province", "user": 1, "name": "x"}),
            "private ink": data(items=[{"id": annotation["id"],
                                        "annotation": {**annotation, "visibility": "private"}}]),
            "a document of no meeting here": data(document=owner_doc + 1000),
            "an old version": data(version=2),
            "a page the document does not have": data(page=99),
        }
        # A document of another meeting of the province, which also invites the ward.
        chair = await t.province.login("chutri")
        other_meeting, _ = await another_meeting(t, chair)
        other = await upload_ready(t.province, other_meeting, make_pdf(tmp_path, pages=2,
                                                                       name="khac.pdf"),
                                   title="Khác")
        refused["another meeting's document"] = data(document=other["id"])
        reports = {why: await ward.report(ward_id, "ink.share", body)
                   for why, body in refused.items()}
        for why, report in reports.items():
            async def settled(rid: str = report.id) -> str | None:
                found = await ward.reports.state_of(rid)
                return found if found and found.startswith("refused") else None
            outcome = await until(settled, 45, f"{why}: refused")  # told down the journal
            assert "refused" in outcome, (why, outcome)
        for h in (t.province, t.city):
            ids = await stored_ids(h)
            assert annotation["id"] not in ids and huge["annotation"]["id"] not in ids

        # The same op reported twice (two report ids): one stroke at the owner, not two.
        good = data()
        twice = [await ward.report(ward_id, "ink.share", good) for _ in range(2)]
        for report in twice:  # delivered at the city, then by the city to the province
            for outbox in (ward.reports, state(t.city).reports):
                async def delivered(rid: str = report.id, box: Any = outbox) -> bool:
                    return await box.state_of(rid) == "delivered"
                await until(delivered, 15, "delivered")
        async with t.province.server.app[keys.DB].session() as s:
            rows = (await s.exec(select(AnnotationOp).where(
                AnnotationOp.document_id == owner_doc))).all()
        assert [r for r in rows if r.record["effects"][0]["annotation_id"] == annotation["id"]
                ] and len([r for r in rows if r.record["effects"][0]["annotation_id"]
                           == annotation["id"]]) == 1
        assert "refused" in caplog.text and meeting_id
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
