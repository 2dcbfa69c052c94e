"""A mirror applies the owner's page turn (server/cascade/topic/presenter.py) at every node of
the tree, twice (the live push, then its journaled copy): so its statements are counted
here (tests/sql_statements.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.util import await_only
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from documents.mirror_models import DocumentCascade
from rooms.cascade_models import CascadeEntry
from rooms.db import Database
from server.cascade.state import MeetingState
from server.cascade.topic import presenter
from server.cascade.topic.presenter import TOPIC, CopyChanged
from server.core import keys
from server.documents.events import DocumentChanged
from server.documents.keys import DOCUMENTS
from server.documents.presenter import PresenterBoard
from testkit.province import until
from tests.conftest import Harness
from tests.server.cascade.mirror import ward_mirror
from tests.server.core.test_realtime import demo_meeting_id
from tests.server.documents_support import Listener, make_pdf, upload_ready
from tests.sql_statements import COMMIT, statements

KEY = "province/1"
ORIGIN_DOC = 77  # the owner's id of the document
SLOW_S = 3.0  # a stalled journal store, far longer than a turn in-process


class SlowJournal:
    """The node's database as its journal uses it, each session waiting SLOW_S before its
    first statement (a journal store waiting for the database: a disk that stalls, another
    writer). Before it writes, so the test measures the journal's order of work, not
    SQLite's one writer lock."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        await asyncio.sleep(SLOW_S)
        async with self.db.session() as s:
            yield s


async def _mirror(h: Harness, tmp_path: Path) -> tuple[MeetingState, int]:
    """The demo meeting as the ward's mirror of the province's meeting KEY, a processed
    document in it as the mirror of the owner's ORIGIN_DOC, and the presenter topics as a
    cascade node installs them."""
    meeting_id = await demo_meeting_id(h)
    app = h.server.app
    doc = await upload_ready(h, meeting_id, make_pdf(tmp_path, pages=5), title="Báo cáo")
    state = await ward_mirror(app, meeting_id, KEY, DocumentCascade(
        document_id=doc["id"], meeting_id=meeting_id, origin_id=ORIGIN_DOC, version=1,
        sha256="0" * 64, size=1))
    presenter.install(app, state)
    return state, meeting_id


def _turn(seq: int, page: int) -> dict[str, Any]:
    return {"active": True, "document": ORIGIN_DOC, "page": page, "zoom": 1.0,
            "scroll_x": 0.0, "scroll_y": 0.0, "seq": seq,
            "presenter": {"origin": "province", "user": 3, "name": "Chủ trì"}}


async def _page_turn(state: MeetingState, journal_seq: int, page: int) -> None:
    """The owner's page turn as a mirror receives it: pushed live, then journaled."""
    data = _turn(journal_seq * 1000, page)
    await state.journal.ingest(KEY, [{"seq": 0, "topic": TOPIC, "data": data}])
    await state.journal.ingest(KEY, [{"seq": journal_seq, "topic": TOPIC, "data": data}])
    await until(lambda: asyncio.sleep(0, state.journal.applied(KEY) >= journal_seq), 10,
                f"entry {journal_seq} applied")
    await asyncio.sleep(0.3)  # what follows it (a mark of what was applied) done too


async def test_a_mirror_turns_the_owners_page_in_two_writes_and_no_read(
        hopso_sqlite: Harness, tmp_path: Path) -> None:
    """The live push: the presentation written (its copy of the document known from the
    turn before: MirrorDocs); the journaled copy, already shown, stored marked applied in
    one statement (the presenter topic `keeps`). Both queued at once (the copy came before
    the live push was applied): the copy applied alone, written with its entry in one
    commit. Before: the document read at every turn (6 statements, 3 commits), and before
    that its mirror and the document read apart and the journaled copy stored, then marked
    applied in a commit of its own (9, 4)."""
    state, meeting_id = await _mirror(hopso_sqlite, tmp_path)
    db = hopso_sqlite.server.app[keys.DB]
    await _page_turn(state, 1, 1)  # the presenter's placeholder made once, first
    # Not the page turn's: the documents feature's access log of the upload, written late.
    await hopso_sqlite.server.app[DOCUMENTS].access.flush()
    board = hopso_sqlite.server.app[DOCUMENTS].presenters
    with statements(db) as apart:
        data = _turn(2000, 2)
        await state.journal.ingest(KEY, [{"seq": 0, "topic": TOPIC, "data": data}])
        await until(lambda: asyncio.sleep(0, board._live[meeting_id].state["page"] == 2), 10,
                    "the live push applied")
        await state.journal.ingest(KEY, [{"seq": 2, "topic": TOPIC, "data": data}])
        await until(lambda: asyncio.sleep(0, state.journal.applied(KEY) >= 2), 10, "2")
        await until(lambda: asyncio.sleep(0, not state.journal._marking), 10, "stored")
    assert [q.split()[0] for q in apart] == ["UPDATE", COMMIT, "INSERT", COMMIT], apart
    with statements(db) as together:
        await _page_turn(state, 3, 3)
    assert [q.split()[0] for q in together] == ["UPDATE", "INSERT", COMMIT], together
    journal = [q for q in together if "cascadeentry" in q.split("WHERE")[0]]
    assert len(journal) == 1 and journal[0].startswith("INSERT INTO cascadeentry"), journal
    shown = await board.get(meeting_id)
    assert shown["active"] and shown["page"] == 3
    async with db.session() as s:
        stored = (await s.exec(select(CascadeEntry).where(CascadeEntry.key == KEY))).all()
    assert [(e.seq, e.applied) for e in stored] == [(1, True), (2, True), (3, True)]


async def test_a_turn_is_shown_without_waiting_for_the_commit_of_the_turn_before(
        hopso_sqlite: Harness, tmp_path: Path) -> None:
    """Two turns back to back while the node's journal is slow to store: the second one's
    live push is applied while the first one's journaled copy is still being stored (its
    store runs beside the applying, not in front of the next entry)."""
    state, meeting_id = await _mirror(hopso_sqlite, tmp_path)
    await _page_turn(state, 1, 1)
    board = hopso_sqlite.server.app[DOCUMENTS].presenters
    journal = state.journal
    journal.db = SlowJournal(journal.db)  # type: ignore[assignment]
    try:
        started = time.monotonic()
        first, second = _turn(2000, 2), _turn(3000, 3)
        await journal.ingest(KEY, [{"seq": 0, "topic": TOPIC, "data": first}])
        await journal.ingest(KEY, [{"seq": 2, "topic": TOPIC, "data": first}])
        await journal.ingest(KEY, [{"seq": 0, "topic": TOPIC, "data": second}])

        async def turned() -> bool:
            return bool((await board.get(meeting_id))["page"] == 3)
        await until(turned, 10, "page 3 shown")
        took = time.monotonic() - started
        assert took < SLOW_S / 2, f"page 3 after {took:.2f} s"
        # (shown before it is written: entry 2, covered by page 3, is stored after that)
        await until(lambda: asyncio.sleep(0, journal.applied(KEY) >= 2), 10, "applied")
        await until(lambda: asyncio.sleep(0, not journal._marking), 10, "entry 2 stored")
    finally:
        journal.db = journal.db.db  # type: ignore[attr-defined]
    async with hopso_sqlite.server.app[keys.DB].session() as s:
        stored = (await s.exec(select(CascadeEntry).where(CascadeEntry.key == KEY))).all()
    assert [(e.seq, e.applied) for e in stored] == [(1, True), (2, True)]


def _stalled(db: Database, statement: str, seconds: float) -> Any:
    """Holds every `statement` of `db` for `seconds` before it runs (a write waiting for the
    database), and says while one is held; remove with `event.remove`."""
    holding = {"now": False, "count": 0}

    def hold(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        if sql.lstrip().startswith(statement):
            holding["now"], holding["count"] = True, holding["count"] + 1
            try:
                await_only(asyncio.sleep(seconds))
            finally:
                holding["now"] = False
    event.listen(db.engine.sync_engine, "before_cursor_execute", hold)
    return hold, holding


@asynccontextmanager
async def _write_held(state: MeetingState, db: Database, tablet: Listener, data: dict[str, Any]
                      ) -> AsyncIterator[tuple[dict[str, Any], dict[str, Any]]]:
    """The live push of the turn `data` with the presentation's write held for SLOW_S: the
    tablet has its page well before the write could end (pushed after it: SLOW_S at least),
    and the write then begins (it may not have when the tablet had the page). Yields what
    the tablet was shown and the hold's state."""
    hold, holding = _stalled(db, "UPDATE presentation", SLOW_S)
    try:
        started = time.monotonic()
        await state.journal.ingest(KEY, [{"seq": 0, "topic": TOPIC, "data": data}])
        shown = await tablet.wait_for("present:state", lambda st: st["page"] == data["page"],
                                      timeout=SLOW_S / 2)
        assert time.monotonic() - started < SLOW_S / 2
        await until(lambda: asyncio.sleep(0, holding["now"]), SLOW_S / 2, "the write held")
        yield shown, holding
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", hold)


async def test_the_tablets_get_the_page_before_the_mirror_writes_it(
        hopso_sqlite: Harness, tmp_path: Path) -> None:
    """A page turn at a mirror is pushed to its tablets from the board's copy, then
    written: with the presentation's write held for SLOW_S, a tablet there has the page
    while the write is still held (before: written first, pushed after), and present:get
    gives it meanwhile. Once written, the
    row says the same page, at the seq the tablet was shown (never lower: present:get
    after it is not taken for a stale state), and the journaled copy is stored applied."""
    state, meeting_id = await _mirror(hopso_sqlite, tmp_path)
    db = hopso_sqlite.server.app[keys.DB]
    await _page_turn(state, 1, 1)
    tablet = await Listener.open(hopso_sqlite, await hopso_sqlite.login("daibieu"), meeting_id)
    data = _turn(2000, 3)
    async with _write_held(state, db, tablet, data) as (shown, holding):
        assert holding["count"] == 1, holding
        # A tablet joining meanwhile is given that page too (no later push would correct
        # the page before).
        ack = await tablet.call("present:get", {"meeting_id": meeting_id})
        assert ack["ok"] and ack["result"]["page"] == 3 and holding["now"], ack
        await state.journal.ingest(KEY, [{"seq": 2, "topic": TOPIC, "data": data}])
        await until(lambda: asyncio.sleep(0, state.journal.applied(KEY) >= 2), 10, "entry 2")
        await until(lambda: asyncio.sleep(0, not state.journal._marking), 10, "stored")
    row = await hopso_sqlite.server.app[DOCUMENTS].presenters.get(meeting_id)
    assert row["page"] == 3 and row["seq"] == shown["seq"], (row, shown)
    async with db.session() as s:
        stored = (await s.exec(select(CascadeEntry).where(CascadeEntry.key == KEY))).all()
    assert [(e.seq, e.applied) for e in stored] == [(1, True), (2, True)]


async def test_a_turn_shown_whose_write_failed_is_written_from_its_journaled_copy(
        hopso_sqlite: Harness, tmp_path: Path) -> None:
    """Nothing shown is lost: the live push's write fails after its tablets were shown the
    page; its journaled copy is then applied (not skipped as shown), written with the entry
    in one commit, so the row and the journal agree, and a board started afresh on the same
    database (the node restarted) gives the page the tablets saw."""
    state, meeting_id = await _mirror(hopso_sqlite, tmp_path)
    db = hopso_sqlite.server.app[keys.DB]
    await _page_turn(state, 1, 1)
    failed = {"count": 0}

    def fail_once(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        if sql.lstrip().startswith("UPDATE presentation") and not failed["count"]:
            failed["count"] = 1
            raise OSError("disk full")
    tablet = await Listener.open(hopso_sqlite, await hopso_sqlite.login("daibieu"), meeting_id)
    event.listen(db.engine.sync_engine, "before_cursor_execute", fail_once)
    try:
        data = _turn(2000, 4)
        await state.journal.ingest(KEY, [{"seq": 0, "topic": TOPIC, "data": data}])
        await tablet.wait_for("present:state", lambda st: st["page"] == 4, timeout=5)
        await until(lambda: asyncio.sleep(0, bool(failed["count"])), 5, "the failed write")
        # Not the turn's: the access log's rows so far (its flush each second landed in the
        # window once in CI).
        await hopso_sqlite.server.app[DOCUMENTS].access.flush()
        with statements(db) as seen:
            await state.journal.ingest(KEY, [{"seq": 2, "topic": TOPIC, "data": data}])
            await until(lambda: asyncio.sleep(0, state.journal.applied(KEY) >= 2), 10, "2")
            await until(lambda: asyncio.sleep(0, not state.journal._marking), 10, "stored")
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", fail_once)
    assert [q.split()[0:3] for q in seen] == [
        ["UPDATE", "presentation", "SET"], ["INSERT", "INTO", "cascadeentry"], [COMMIT]], seen
    restarted = PresenterBoard(db)
    row = await restarted.get(meeting_id)
    assert row["active"] and row["page"] == 4, row


async def test_a_mirror_behind_shows_only_the_newest_turn_in_one_commit(
        hopso_sqlite: Harness, tmp_path: Path) -> None:
    """Two turns queued at once at a mirror (live push and journaled copy each, a node
    behind: its CPU, a catch-up): each entry is the whole presentation, so only the newest
    is applied, written with both journal entries in one commit, and the tablets are never
    sent the page between (before: both turns applied, two writes and two stores)."""
    state, meeting_id = await _mirror(hopso_sqlite, tmp_path)
    db = hopso_sqlite.server.app[keys.DB]
    await _page_turn(state, 1, 1)
    tablet = await Listener.open(hopso_sqlite, await hopso_sqlite.login("daibieu"), meeting_id)
    first, second = _turn(2000, 2), _turn(3000, 3)
    before = len(tablet.of("present:state"))  # (what joining sent)
    with statements(db) as seen:
        await state.journal.ingest(KEY, [{"seq": 0, "topic": TOPIC, "data": first},
                                         {"seq": 2, "topic": TOPIC, "data": first},
                                         {"seq": 0, "topic": TOPIC, "data": second},
                                         {"seq": 3, "topic": TOPIC, "data": second}])
        await until(lambda: asyncio.sleep(0, state.journal.applied(KEY) >= 3), 10, "3")
        await until(lambda: asyncio.sleep(0, not state.journal._marking), 10, "stored")
    await tablet.wait_for("present:state", lambda st: st["page"] == 3, timeout=5)
    assert [st["page"] for st in tablet.of("present:state")[before:]] == [3]
    assert [q.split()[0] for q in seen] == ["UPDATE", "INSERT", COMMIT], seen
    async with db.session() as s:
        stored = (await s.exec(select(CascadeEntry).where(CascadeEntry.key == KEY))).all()
    assert [(e.seq, e.applied) for e in stored] == [(1, True), (2, True), (3, True)]


async def test_the_first_turn_at_a_mirror_reaches_its_tablets_before_the_presentation_is_written(
        hopso_sqlite: Harness, tmp_path: Path) -> None:
    """The owner's first page turn finds no presentation here (the board has no copy of it):
    pushed at the first major seq, then written (before: written first, then pushed; with
    every node of the tree doing that at the same moment, the first turn was the page turns'
    tail in bench/province.py). The row is written at the seq the tablet was shown."""
    state, meeting_id = await _mirror(hopso_sqlite, tmp_path)
    db = hopso_sqlite.server.app[keys.DB]
    tablet = await Listener.open(hopso_sqlite, await hopso_sqlite.login("daibieu"), meeting_id)
    data = _turn(1000, 2)
    async with _write_held(state, db, tablet, data) as (shown, _):
        await state.journal.ingest(KEY, [{"seq": 1, "topic": TOPIC, "data": data}])
        await until(lambda: asyncio.sleep(0, state.journal.applied(KEY) >= 1), 10, "entry 1")
    row = await hopso_sqlite.server.app[DOCUMENTS].presenters.get(meeting_id)
    assert row["page"] == 2 and row["seq"] == shown["seq"], (row, shown)


async def _copy_id(db: Database) -> int:
    async with db.session() as s:
        copy = (await s.exec(select(DocumentCascade).where(
            DocumentCascade.origin_id == ORIGIN_DOC))).one()
    return copy.document_id


async def test_a_published_documents_page_sizes_are_loaded_before_its_first_turn(
        hopso_sqlite: Harness, tmp_path: Path) -> None:
    """A document published and processed here has its page sizes (its annotation log)
    loaded then, so the first page turn presenting it reads neither its version nor its
    annotations, at every node at once."""
    state, meeting_id = await _mirror(hopso_sqlite, tmp_path)
    app = hopso_sqlite.server.app
    db = app[keys.DB]
    document_id = await _copy_id(db)
    # As its processing ends at a node whose topics were installed at start-up.
    await app[keys.BUS].publish(DocumentChanged(meeting_id, document_id, True, True))
    await until(lambda: asyncio.sleep(0, app[DOCUMENTS].annotations.logs.cached(
        document_id) is not None), 5, "the page sizes loaded")
    with statements(db) as first:
        await _page_turn(state, 1, 1)
    assert not first.reading("annotationop") and not first.reading("documentversion"), first


async def test_a_copy_made_current_here_is_known_to_its_first_turn_until_it_changes(
        hopso_sqlite: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """At a node of one process, a copy the documents applier made current (CopyChanged)
    is read then, with its page sizes: the first page turn reads no document at all, however
    long after (its copy is forgotten only when a document of the meeting changes here; the
    trust of DOC_TRUST_S is for nodes of several processes)."""
    state, meeting_id = await _mirror(hopso_sqlite, tmp_path)
    app = hopso_sqlite.server.app
    db = app[keys.DB]
    document_id = await _copy_id(db)
    with statements(db) as warming:
        await app[keys.BUS].publish(CopyChanged(meeting_id, document_id, ORIGIN_DOC))
        await until(lambda: asyncio.sleep(0, app[DOCUMENTS].annotations.logs.cached(
            document_id) is not None), 5, "the copy and its page sizes read")
    assert warming.reading("document"), warming

    class Later:  # the first turn comes long after (the presenter module's clock only)
        @staticmethod
        def monotonic() -> float:
            return time.monotonic() + presenter.DOC_TRUST_S + 60
    monkeypatch.setattr(presenter, "time", Later)
    with statements(db) as first:
        await _page_turn(state, 1, 1)
    assert not [q for q in first if q.lstrip().startswith("SELECT document")], first
    assert not first.reading("annotationop") and not first.reading("documentversion"), first
    # A change of a document of the meeting here: the next turn reads its copy again.
    await app[keys.BUS].publish(DocumentChanged(meeting_id, document_id, True, True))
    with statements(db) as after:
        await _page_turn(state, 2, 2)
    assert [q for q in after if q.lstrip().startswith("SELECT document")], after
