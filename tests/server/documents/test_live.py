"""Live documents: annotations (private stays private, shared arrives live, durable before the
ack), the annotated export, and bad ops (presenter follow: test_presenter.py)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pymupdf

from documents.annotation_ops import AnnotationLog
from documents.op_records import Actor
from server.core import keys
from server.documents.annotation_store import stored_row
from tests.conftest import Harness, start_harness
from tests.server.documents_support import (
    Listener,
    demo_meeting_id,
    fetch,
    ink_op,
    make_pdf,
    runtime,
    subscribed_viewers,
    upload_ready,
)
from tests.server.wire_times import assert_wire_times


async def test_private_strokes_stay_private_and_shared_ones_arrive_live(
        hopso: Harness, tmp_path: Path) -> None:
    meeting_id = await demo_meeting_id(hopso)
    doc = await upload_ready(hopso, meeting_id, make_pdf(tmp_path, pages=2))
    a, b, chair = await subscribed_viewers(hopso, meeting_id, doc["id"], "daibieu", "daibieu2", "chutri")
    version = doc["version"]
    a_user = (await hopso.login("daibieu")).user

    private = ink_op(page=0)
    ack = await a.call("annotation:op", {"document_id": doc["id"], "version": version,
                                         "op": private})
    assert ack["ok"], ack
    result = ack["result"]
    assert result["seq"] == 1 and not result["replayed"]
    mine = result["event"]["upserts"][0]
    assert mine["visibility"] == "private" and mine["author_id"] == str(a_user["id"])
    shared = ink_op(page=0, visibility="meeting")
    ack = await a.call("annotation:op", {"document_id": doc["id"], "version": version,
                                         "op": shared})
    assert ack["ok"] and ack["result"]["seq"] == 2
    for viewer in (b, chair):
        event = await viewer.wait_for("annotation:event", lambda e: e["event"]["seq"] == 2)
        assert event["own"] is False and event["event"]["prev_seq"] == 0
        assert [u["id"] for u in event["event"]["upserts"]] == [shared["annotation"]["id"]]
    presenter_note = ink_op(page=0, visibility="presenter")
    ack = await a.call("annotation:op", {"document_id": doc["id"], "version": version,
                                         "op": presenter_note})
    assert ack["ok"] and ack["result"]["seq"] == 3
    await chair.wait_for("annotation:event", lambda e: e["event"]["seq"] == 3)
    await asyncio.sleep(0.2)
    # B never heard of the private stroke nor the presenter-only one, not even their timing.
    assert {e["event"]["seq"] for e in b.of("annotation:event")} == {2}
    for event in b.of("annotation:event") + chair.of("annotation:event"):
        assert private["annotation"]["id"] not in str(event)
    # Snapshots agree: B sees only the shared stroke, A sees all three.
    snap = await b.call("annotation:snapshot", {"document_id": doc["id"], "version": version})
    assert [[x["id"] for x in p["annotations"]] for p in snap["result"]["pages"]] == \
        [[shared["annotation"]["id"]]]
    snap = await a.call("annotation:snapshot", {"document_id": doc["id"], "version": version,
                                                "pages": [0, 1]})
    assert [len(p["annotations"]) for p in snap["result"]["pages"]] == [3, 0]
    # B may not erase A's stroke, private or shared.
    for target in (private, shared):
        ack = await b.call("annotation:op", {"document_id": doc["id"], "version": version, "op": {
            "op_id": str(uuid.uuid4()), "type": "delete", "page": 0,
            "ids": [target["annotation"]["id"]]}})
        assert ack["error"]["code"] == "not_owner"
    # Resending an acknowledged op changes nothing.
    ack = await a.call("annotation:op", {"document_id": doc["id"], "version": version,
                                         "op": shared})
    assert ack["result"]["replayed"] and ack["result"]["seq"] == 2
    since = await b.call("annotation:since", {"document_id": doc["id"], "version": version,
                                              "page": 0, "after_seq": 0})
    assert [e["seq"] for e in since["result"]["events"]] == [2] and since["result"]["seq"] == 2


async def test_annotation_and_document_times_are_iso_8601_utc_on_the_wire(
        hopso_sqlite: Harness, tmp_path: Path) -> None:
    hopso = hopso_sqlite
    started = datetime.now(UTC)
    meeting_id = await demo_meeting_id(hopso)
    doc = await upload_ready(hopso, meeting_id, make_pdf(tmp_path, pages=1))
    a, b = await subscribed_viewers(hopso, meeting_id, doc["id"], "daibieu", "daibieu2")
    where = {"document_id": doc["id"], "version": doc["version"]}
    ack = await a.call("annotation:op", {**where, "op": ink_op(visibility="meeting")})
    pushed = await b.wait_for("annotation:event", lambda e: e["event"]["seq"] == 1)
    snapshot = await b.call("annotation:snapshot", where)
    since = await b.call("annotation:since", {**where, "page": 0, "after_seq": 0})
    upserted = ("event.upserts[0].created_at", "event.upserts[0].updated_at")
    assert_wire_times(ack["result"], *upserted, since=started)
    assert_wire_times(pushed, *upserted, since=started)
    assert_wire_times(snapshot["result"], "pages[0].annotations[0].created_at",
                      "pages[0].annotations[0].updated_at", since=started)
    assert_wire_times(since["result"], "events[0].upserts[0].created_at", since=started)
    details = await a.call("document:subscribe", {"document_id": doc["id"]})
    assert_wire_times(details["result"], "created_at", "updated_at", "versions[0].created_at",
                      since=started)
    await a.close()
    await b.close()


BAD_OPS = [
    ({"type": "add", "page": 0, "annotation": {"id": "x", "kind": "ink",
                                               "data": {"points": [[1, 1]]}}}, "bad_id"),
    ({"type": "add", "page": 9, "annotation": {"id": str(uuid.uuid4()), "kind": "ink",
                                               "data": {"points": [[1, 1]]}}}, "bad_page"),
    ({"type": "add", "page": 0, "annotation": {"id": str(uuid.uuid4()), "kind": "ink",
                                               "data": {"points": [[1, 5000]]}}}, "out_of_page"),
    ({"type": "add", "page": 0, "annotation": {"id": str(uuid.uuid4()), "kind": "ink",
                                               "data": {"points": [[1, 1]] * 5001}}},
     "too_many_points"),
    ({"type": "add", "page": 0, "annotation": {"id": str(uuid.uuid4()), "kind": "note",
                                               "data": {"x": 1, "y": 1, "text": "x" * 2001}}},
     "text_too_long"),
    ({"type": "rotate", "page": 0}, "bad_op"),
    ({"type": "delete", "page": 0, "ids": [str(uuid.uuid4())]}, "not_found"),
    ({"type": "add", "page": 0, "annotation": {"id": str(uuid.uuid4()), "kind": "ink",
                                               "data": {"points": [[1, 1]], "width": 99}}},
     "bad_width"),
]


async def test_bad_ops_are_refused_and_store_nothing(hopso_sqlite: Harness, tmp_path: Path
                                                     ) -> None:
    hopso = hopso_sqlite
    meeting_id = await demo_meeting_id(hopso)
    doc = await upload_ready(hopso, meeting_id, make_pdf(tmp_path, pages=1))
    (a,) = await subscribed_viewers(hopso, meeting_id, doc["id"], "daibieu")
    for op, code in BAD_OPS:  # type: ignore[assignment]
        ack = await a.call("annotation:op", {"document_id": doc["id"], "version": 1,
                                             "op": {"op_id": str(uuid.uuid4()), **op}})
        assert ack["ok"] is False and ack["error"]["code"] == code, ack
    ack = await a.call("annotation:op", {"document_id": doc["id"], "version": 1,
                                         "op": {"type": "add"}, "extra": 1})
    assert ack["error"]["code"] == "invalid"
    snap = await a.call("annotation:snapshot", {"document_id": doc["id"], "version": 1})
    assert snap["result"]["pages"] == []
    ack = await a.call("annotation:op", {"document_id": doc["id"], "version": 2,
                                         "op": ink_op()})
    assert ack["error"]["code"] == "stale_version"
    ack = await a.call("annotation:op", {"document_id": doc["id"] + 1000, "version": 1,
                                         "op": ink_op()})
    assert ack["error"]["code"] == "not_found"


async def test_document_events_of_another_meeting_are_not_found(hopso_sqlite: Harness,
                                                                tmp_path: Path) -> None:
    hopso = hopso_sqlite
    meeting_id = await demo_meeting_id(hopso)
    doc = await upload_ready(hopso, meeting_id, make_pdf(tmp_path, pages=1))
    admin = await Listener.open(hopso, await hopso.login("quantri"))
    for event, payload in [
        ("document:subscribe", {"document_id": doc["id"]}),
        ("annotation:op", {"document_id": doc["id"], "version": 1, "op": ink_op()}),
        ("annotation:snapshot", {"document_id": doc["id"], "version": 1}),
        ("annotation:since", {"document_id": doc["id"], "version": 1, "page": 0,
                              "after_seq": 0}),
        ("present:update", {"document_id": doc["id"], "page": 0, "zoom": 1, "scroll_x": 0,
                            "scroll_y": 0}),
        ("present:get", {"meeting_id": meeting_id}),
    ]:
        ack = await admin.call(event, payload)
        assert ack["ok"] is False and ack["error"]["code"] == "not_found", (event, ack)


async def test_acknowledged_op_survives_a_restart(harness_database_url: str | None, tmp_path: Path
                                                  ) -> None:
    first = await start_harness(tmp_path, harness_database_url)
    try:
        meeting_id = await demo_meeting_id(first)
        doc = await upload_ready(first, meeting_id, make_pdf(tmp_path, pages=1))
        (a,) = await subscribed_viewers(first, meeting_id, doc["id"], "daibieu")
        op = ink_op(visibility="meeting")
        ack = await a.call("annotation:op", {"document_id": doc["id"], "version": 1, "op": op})
        assert ack["ok"], ack
    finally:
        await first.close()
        await first.server.close()
    second = await start_harness(tmp_path, harness_database_url)
    try:
        (b,) = await subscribed_viewers(second, meeting_id, doc["id"], "daibieu2")
        snap = await b.call("annotation:snapshot", {"document_id": doc["id"], "version": 1})
        assert snap["result"]["pages"][0]["seq"] == 1
        assert [x["id"] for x in snap["result"]["pages"][0]["annotations"]] == \
            [op["annotation"]["id"]]
        (a,) = await subscribed_viewers(second, meeting_id, doc["id"], "daibieu")
        ack = await a.call("annotation:op", {"document_id": doc["id"], "version": 1, "op": op})
        assert ack["result"]["replayed"] is True and ack["result"]["seq"] == 1
    finally:
        await second.close()
        await second.server.close()


async def test_export_holds_my_ink_and_shared_notes_but_not_others_private(
        hopso_sqlite: Harness, tmp_path: Path) -> None:
    hopso = hopso_sqlite
    meeting_id = await demo_meeting_id(hopso)
    doc = await upload_ready(hopso, meeting_id, make_pdf(tmp_path, pages=2))
    a, b = await subscribed_viewers(hopso, meeting_id, doc["id"], "daibieu", "daibieu2")
    mine = ink_op(page=1, points=[[100, 100], [150, 180], [220, 140]])
    theirs_shared = ink_op(page=0, visibility="meeting")
    theirs_private = ink_op(page=0)
    for listener, op in ((a, mine), (b, theirs_shared), (b, theirs_private)):
        ack = await listener.call("annotation:op", {"document_id": doc["id"], "version": 1,
                                                    "op": op})
        assert ack["ok"], ack
    client = await hopso.login("daibieu")
    status, kind, body, headers = await fetch(client, f"/api/documents/{doc['id']}/export")
    assert status == 200 and kind == "application/pdf", body[:200]
    assert "attachment" in headers["Content-Disposition"]
    pdf = pymupdf.open("pdf", body)
    names = {(page.number, a.info["name"] or a.info["title"], a.type[1])
             for page in pdf for a in page.annots()}
    ink = [(p, t) for p, _, t in names if t == "Ink"]
    assert sorted(ink) == [(0, "Ink"), (1, "Ink")]
    ids = {a.info.get("name") for page in pdf for a in page.annots()} | \
        {pdf.xref_get_key(a.xref, "NM")[1] for page in pdf for a in page.annots()}
    assert any(mine["annotation"]["id"] in str(i) for i in ids)
    assert not any(theirs_private["annotation"]["id"] in str(i) for i in ids)
    status, _, body, _ = await fetch(client, f"/api/documents/{doc['id']}/export?flatten=1")
    assert status == 200
    flat = pymupdf.open("pdf", body)
    assert not list(flat[1].annots())
    # The access log shows the export, for the secretary's eyes only.
    secretary = await hopso.login("thuky")
    status, log = await secretary.call("GET", f"/api/documents/{doc['id']}/access")
    assert status == 200 and "export" in {e["kind"] for e in log["entries"]}
    status, _ = await client.call("GET", f"/api/documents/{doc['id']}/access")
    assert status == 403


async def test_confidential_pages_are_watermarked_and_never_downloaded(
        hopso_sqlite: Harness, tmp_path: Path) -> None:
    hopso = hopso_sqlite
    meeting_id = await demo_meeting_id(hopso)
    doc = await upload_ready(hopso, meeting_id, make_pdf(tmp_path, pages=1), confidential="1")
    assert doc["confidential"] and not doc["has_pdf"]
    client = await hopso.login("daibieu")
    status, _, body, _ = await fetch(client, f"/api/documents/{doc['id']}/pdf")
    assert status == 403 and b"view_only" in body
    status, kind, page, headers = await fetch(client, f"/api/documents/{doc['id']}/pages/0")
    assert status == 200 and kind == "image/jpeg" and headers["Cache-Control"] == "no-store"
    plain = (hopso.settings.data_dir / "documents").rglob("pages/0000.jpg")
    assert page != next(plain).read_bytes()  # rendered for this viewer, not the cached raster
    status, _, body, _ = await fetch(client, f"/api/documents/{doc['id']}/export")
    assert status == 200
    text = pymupdf.open("pdf", body)[0].get_text()
    assert "Lê Minh Tuấn" in text and "Thành phố Đồng Hới" in text


async def _burst(hub: Any) -> list[int]:
    """Record the size of every batch the hub stores."""
    sizes: list[int] = []
    original = hub._write_batch

    async def counting(document_id: int, batch: list[Any]) -> None:
        sizes.append(len(batch))
        await original(document_id, batch)

    hub._write_batch = counting
    return sizes


async def test_ops_arriving_together_are_stored_together(hopso: Harness, tmp_path: Path
                                                         ) -> None:
    meeting_id = await demo_meeting_id(hopso)
    doc = await upload_ready(hopso, meeting_id, make_pdf(tmp_path, pages=2))
    viewers = await subscribed_viewers(hopso, meeting_id, doc["id"], "daibieu", "daibieu2", "chutri")
    hub = runtime(hopso).annotations
    sizes = await _burst(hub)
    ops = [[ink_op(page=i % 2, visibility="meeting") for i in range(8)] for _ in viewers]
    bad = {**ink_op(page=0), "page": 99}
    calls = [v.call("annotation:op", {"document_id": doc["id"], "version": 1, "op": op})
             for v, mine in zip(viewers, ops, strict=True) for op in mine]
    acks = await asyncio.gather(*calls, viewers[0].call("annotation:op", {
        "document_id": doc["id"], "version": 1, "op": bad}))
    assert acks[-1]["ok"] is False and acks[-1]["error"]["code"] == "bad_page"
    assert all(a["ok"] for a in acks[:-1]), acks
    assert sum(sizes) == len(acks) and max(sizes) > 1  # fewer transactions than ops
    for page in (0, 1):  # dense seqs per page, one per op
        assert sorted(a["result"]["seq"] for a in acks[:-1] if a["result"]["page"] == page) \
            == list(range(1, 13))
    # Everyone else got every shared op live, in seq order per page.
    for i, viewer in enumerate(viewers):
        others = {op["op_id"] for j, mine in enumerate(ops) if j != i for op in mine}
        for _ in range(100):
            got = [e["event"] for e in viewer.of("annotation:event") if not e["own"]]
            if {e["op_id"] for e in got} >= others:
                break
            await asyncio.sleep(0.05)
        assert {e["op_id"] for e in got} >= others
        for page in (0, 1):
            seqs = [e["seq"] for e in got if e["page"] == page]
            assert seqs == sorted(seqs)
    # What was acknowledged is what the database holds: a log rebuilt from it agrees.
    before = await viewers[0].call("annotation:snapshot", {"document_id": doc["id"],
                                                           "version": 1})
    hub.logs.evict(doc["id"])
    after = await viewers[0].call("annotation:snapshot", {"document_id": doc["id"],
                                                          "version": 1})
    assert after == before
    assert [len(p["annotations"]) for p in after["result"]["pages"]] == [12, 12]


async def test_a_batch_that_clashes_with_another_process_is_redone_op_by_op(
        hopso: Harness, tmp_path: Path) -> None:
    meeting_id = await demo_meeting_id(hopso)
    doc = await upload_ready(hopso, meeting_id, make_pdf(tmp_path, pages=2))
    (a,) = await subscribed_viewers(hopso, meeting_id, doc["id"], "daibieu")
    user_id = (await hopso.login("daibieu")).user["id"]
    ack = await a.call("annotation:op", {"document_id": doc["id"], "version": 1,
                                         "op": ink_op(page=1)})
    assert ack["ok"], ack  # the hub now holds the log in memory
    # Another server process stores seq 1 of page 0 behind this one's back.
    foreign = AnnotationLog(str(doc["id"]), [(w, h) for w, h in doc["page_sizes"]])
    record = foreign.apply(ink_op(page=0, visibility="meeting"), Actor(str(user_id))).record
    async with hopso.server.app[keys.DB].session() as s:
        s.add(stored_row(doc["id"], 1, record, user_id))
    hub = runtime(hopso).annotations
    sizes = await _burst(hub)
    ops = [ink_op(page=0) for _ in range(5)]
    acks = await asyncio.gather(*(a.call("annotation:op", {"document_id": doc["id"],
                                                           "version": 1, "op": op})
                                  for op in ops))
    assert all(x["ok"] for x in acks), acks
    assert sorted(x["result"]["seq"] for x in acks) == [2, 3, 4, 5, 6]
    assert sum(sizes) == 5
    snap = await a.call("annotation:snapshot", {"document_id": doc["id"], "version": 1,
                                                "pages": [0]})
    assert snap["result"]["pages"][0]["seq"] == 6
    assert len(snap["result"]["pages"][0]["annotations"]) == 6
