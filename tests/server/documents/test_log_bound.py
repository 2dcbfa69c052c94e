"""The in-memory annotation log is bounded (a recent window of ops per document, a cache capped
by size), while `annotation:since` from an old seq and a resent old op id still answer as if
every op were in memory: the older ones come from the database."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlmodel import func, select

from documents.db_models import AnnotationOp
from server.core import keys
from tests.conftest import Harness
from tests.server.documents_support import (
    demo_meeting_id,
    ink_op,
    make_pdf,
    runtime,
    subscribed_viewers,
    upload_ready,
)

WINDOW = 16


async def _stored(hopso: Harness, doc_id: int) -> int:
    async with hopso.server.app[keys.DB].session() as s:
        return int((await s.exec(select(func.count()).select_from(AnnotationOp).where(
            AnnotationOp.document_id == doc_id))).one())


async def test_many_ops_keep_the_log_bounded_yet_old_resyncs_and_resends_answer(
        hopso: Harness, tmp_path: Path) -> None:
    meeting_id = await demo_meeting_id(hopso)
    doc = await upload_ready(hopso, meeting_id, make_pdf(tmp_path, pages=2))
    doc_id, version = doc["id"], doc["version"]
    a, b, chair = await subscribed_viewers(hopso, meeting_id, doc_id, "daibieu", "daibieu2", "chutri")
    hub = runtime(hopso).annotations
    hub.logs.max_records = WINDOW
    hub.logs.evict(doc_id)
    acks: list[tuple[dict[str, Any], dict[str, Any]]] = []
    visibilities = ["meeting", "private", "presenter", "meeting", "meeting"]
    for round_ in range(12):  # 120 ops, in bursts of 10 so some arrive together
        burst = [(a if i % 3 else b, ink_op(page=(round_ + i) % 2,
                                            visibility=visibilities[(round_ + i) % 5]))
                 for i in range(10)]
        got = await asyncio.gather(*(who.call("annotation:op", {
            "document_id": doc_id, "version": version, "op": op}) for who, op in burst))
        assert all(x["ok"] for x in got), got
        acks += [(op, x["result"]) for (_, op), x in zip(burst, got, strict=True)]
        log = hub.logs.cached(doc_id)
        assert log is not None and log.records_in_memory <= WINDOW
    assert await _stored(hopso, doc_id) == 120
    assert log.trimmed and hub.logs.cached_entries(doc_id) <= WINDOW + 120

    # Resync from old seqs: the same answer as a log holding every op.
    asks = [(v, page, after) for v in (a, b, chair) for page in (0, 1) for after in (0, 7, 40)]

    async def since_all() -> list[Any]:
        out = []
        for viewer, page, after in asks:
            ack = await viewer.call("annotation:since", {"document_id": doc_id,
                                                         "version": version, "page": page,
                                                         "after_seq": after})
            assert ack["ok"], ack
            out.append(ack["result"])
        return out

    bounded = await since_all()
    assert len(bounded[0]["events"]) > WINDOW  # more than memory holds
    hub.logs.max_records = 10_000
    hub.logs.evict(doc_id)
    assert await since_all() == bounded
    hub.logs.max_records = WINDOW
    hub.logs.evict(doc_id)

    # Resending the very first ops (long out of memory) replays them, even after a restart of
    # the log: same seq, same event, nothing stored; another user may not reuse the op id.
    for op, first in acks[:3]:
        author = b if acks.index((op, first)) % 3 == 0 else a
        again = await author.call("annotation:op", {"document_id": doc_id, "version": version,
                                                    "op": op})
        assert again["ok"], again
        assert again["result"]["replayed"] is True
        assert {k: again["result"][k] for k in ("seq", "page", "event")} == \
            {k: first[k] for k in ("seq", "page", "event")}
    thief = await chair.call("annotation:op", {"document_id": doc_id, "version": version,
                                               "op": acks[1][0]})
    assert thief["ok"] is False and thief["error"]["code"] == "op_id_conflict"
    assert await _stored(hopso, doc_id) == 120
    # New ops still get the next seqs.
    ack = await a.call("annotation:op", {"document_id": doc_id, "version": version,
                                         "op": ink_op(page=0, visibility="meeting")})
    assert ack["ok"] and ack["result"]["seq"] == 61


async def test_the_cache_is_capped_by_size_not_only_by_document_count(
        hopso_sqlite: Harness, tmp_path: Path) -> None:
    meeting_id = await demo_meeting_id(hopso_sqlite)
    docs = [await upload_ready(hopso_sqlite, meeting_id, make_pdf(tmp_path, pages=i + 1))
            for i in range(2)]
    hub = runtime(hopso_sqlite).annotations
    hub.logs.max_records, hub.logs.max_cached_entries = WINDOW, 3 * WINDOW
    listeners = []
    for doc in docs:
        (viewer,) = await subscribed_viewers(hopso_sqlite, meeting_id, doc["id"], "daibieu")
        listeners.append(viewer)
        for _ in range(2 * WINDOW):
            ack = await viewer.call("annotation:op", {"document_id": doc["id"], "version": 1,
                                                      "op": ink_op(page=0)})
            assert ack["ok"], ack
    # Each log alone holds ~WINDOW records + 2 * WINDOW live strokes: both exceed the cap.
    assert hub.logs.cached_entries(docs[0]["id"]) == 0
    assert 0 < hub.logs.cached_entries(docs[1]["id"]) <= WINDOW + 2 * WINDOW
    snap = await listeners[0].call("annotation:snapshot", {"document_id": docs[0]["id"],
                                                           "version": 1})
    assert len(snap["result"]["pages"][0]["annotations"]) == 2 * WINDOW
