"""Following the presenter across nodes (issue 13, item 2): the topics ``presenter`` and
``presenter.pointer``.

At the owner, every change of the meeting's presentation goes down: a start, page turn,
another document or a stop (a "major" change, server/documents/presenter.py) is journaled,
so a node that was cut off finds the current page when it catches up; zoom and scroll on the
same page, and the laser pointer, are pushed live and never stored (the latest wins, the next
page turn corrects a missed one). Each node applies it to its own presentation row through
the documents feature's own board, with the owner's presenter as a placeholder person
(server/cascade/topic/documents_people.py) and its own mirror of the document, so its
tablets follow as they follow a local presenter (same events, its own seq).

A major change goes down twice: pushed live first (as a zoom is), then journaled. The live
push is applied at every node as soon as it arrives, so a page turn waits neither for the
owner's commit of the entry nor for each node's own commit of it; the journaled copy, a few
milliseconds behind, is what a node cut off or restarted catches up from. Each carries the
owner's presentation seq, and a node applies a seq only once and never an older one after a
newer (the two copies, or a zoom overtaken by a page turn, are the same or stale).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import Field
from sqlmodel import col, select

from documents.db_models import Document
from documents.mirror_models import DocumentCascade
from rooms.errors import DomainError
from rooms.models import utcnow
from server.cascade.schemas import NodeSchema, validate
from server.cascade.state import MeetingState
from server.cascade.topic.documents_people import Person, local_user
from server.cascade.topics import Entry, Topic
from server.core import keys
from server.core.realtime import meeting_room
from server.documents.events import DocumentChanged, PresenterMoved, PresenterPointed
from server.documents.keys import DOCUMENTS
from server.documents.presenter import SEQ_STEP, PresenterBusy

log = logging.getLogger(__name__)

TOPIC, POINTER = "presenter", "presenter.pointer"
DOC_TRUST_S = 10.0  # how long a page turn trusts its copy of the document (MirrorDocs)


class PresenterData(NodeSchema):
    active: bool
    document: int | None = Field(default=None, ge=1, le=2**31 - 1)  # the owner's id
    page: int | None = Field(default=None, ge=0, le=100_000)
    zoom: float | None = Field(default=None, ge=0.1, le=10.0)
    scroll_x: float | None = Field(default=None, ge=0.0, le=1.0)
    scroll_y: float | None = Field(default=None, ge=0.0, le=1.0)
    presenter: Person | None = None
    seq: int | None = Field(default=None, ge=0, le=2**62)  # the owner's presentation seq


class PointerData(NodeSchema):
    document: int = Field(ge=1, le=2**31 - 1)
    page: int = Field(ge=0, le=100_000)
    x: float | None = Field(default=None, ge=-1e5, le=1e5)
    y: float | None = Field(default=None, ge=-1e5, le=1e5)


async def _owner_doc(app: web.Application, document_id: int | None) -> bool:
    """Whether the owner's document takes part in the cascade (it was sent down)."""
    if document_id is None:
        return False
    async with app[keys.DB].session() as s:
        row = await s.get(DocumentCascade, document_id)
    return row is not None and row.origin_id is None


async def _mirror_doc(app: web.Application, meeting_id: int, origin_id: int) -> Document | None:
    """This node's copy of the owner's document, in one read (the mirror row joined with
    its document)."""
    async with app[keys.DB].session() as s:
        return (await s.exec(select(Document).join(
            DocumentCascade, col(DocumentCascade.document_id) == col(Document.id)).where(
            DocumentCascade.meeting_id == meeting_id,
            DocumentCascade.origin_id == origin_id))).first()


@dataclass(frozen=True)
class Copy:
    """What a page turn needs of this node's copy of the owner's document."""

    id: int
    version: int
    published: bool


class MirrorDocs:
    """This node's copies of the owner's documents as page turns find them (a page turn at
    every mirror read its copy from the database), forgotten at once when a document of the
    meeting changes in this process (DocumentChanged, and CopyChanged from the documents
    applier). Kept until then where this process is the node's only one (`trust_s`
    infinite: every change is one of its own); else DOC_TRUST_S, so another process's
    change is seen that much later at most."""

    def __init__(self, app: web.Application, trust_s: float = DOC_TRUST_S) -> None:
        self.app = app
        self.trust_s = trust_s
        self._known: dict[tuple[int, int], tuple[float, Copy | None]] = {}
        self._forgotten: dict[int, int] = {}  # meeting -> forgets so far
        self.reads = 0  # database reads, for tests

    async def get(self, meeting_id: int, origin_id: int) -> Copy | None:
        found = self._known.get((meeting_id, origin_id))
        if found is not None and time.monotonic() - found[0] < self.trust_s:
            return found[1]
        self.reads += 1
        forgets = self._forgotten.get(meeting_id, 0)
        doc = await _mirror_doc(self.app, meeting_id, origin_id)
        copy = None if doc is None or doc.id is None else Copy(doc.id, doc.version,
                                                                 doc.published)
        # (one not here yet is looked up again at the next turn; one read before a change
        # that was forgotten meanwhile is not kept)
        if copy is not None and self._forgotten.get(meeting_id, 0) == forgets:
            self._known[(meeting_id, origin_id)] = (time.monotonic(), copy)
        return copy

    def forget(self, meeting_id: int) -> None:
        self._forgotten[meeting_id] = self._forgotten.get(meeting_id, 0) + 1
        for known in [k for k in self._known if k[0] == meeting_id]:
            del self._known[known]


@dataclass(frozen=True, slots=True)
class CopyChanged:
    """This node's copy of an owner's document changed (documents_mirror.py publishes it on
    the bus): page turns read the meeting's copies again, and its page sizes are loaded."""

    meeting_id: int
    document_id: int  # this node's id of the copy
    origin_id: int  # the owner's id of the document


def install(app: web.Application, state: MeetingState) -> None:
    unit = state.unit
    cascaded: set[int] = set()  # the owner's documents known to take part (never undone)
    shown: dict[int, int] = {}  # meeting -> the owner's seq applied here last
    people: dict[tuple[str, int, str], int] = {}  # a presenter -> their placeholder here
    one_process = app[keys.SETTINGS].redis_url is None
    docs = MirrorDocs(app, math.inf if one_process else DOC_TRUST_S)

    async def moved(event: PresenterMoved) -> None:
        st = event.state
        document: int | None = st.get("document_id")
        if st["active"] and document not in cascaded:
            if document is None or not await _owner_doc(app, document):
                return
            cascaded.add(document)
        presenter = st.get("presenter") or None
        data: dict[str, Any] = {
            "active": bool(st["active"]), "document": st.get("document_id"),
            "page": st.get("page"), "zoom": st.get("zoom"), "scroll_x": st.get("scroll_x"),
            "scroll_y": st.get("scroll_y"),
            "presenter": None if presenter is None else {
                "origin": unit, "user": presenter["user_id"], "name": presenter["name"] or ""},
            "seq": int(st["seq"])}
        major = int(st["seq"]) % SEQ_STEP == 0
        await state.publish(event.meeting_id, TOPIC, data, durable=major, live_first=True)

    async def pointed(event: PresenterPointed) -> None:
        if await _owner_doc(app, event.document_id):
            await state.publish(event.meeting_id, POINTER, {
                "document": event.document_id, "page": event.page, "x": event.x, "y": event.y},
                durable=False)

    async def presenter_here(person: Person) -> int:
        """The owner's presenter as a placeholder user here (made once per person and name:
        a session less per page turn)."""
        who = (person.origin, person.user, person.name)
        user_id = people.get(who)
        if user_id is None:
            async with app[keys.DB].session() as s:
                user_id = people[who] = await local_user(s, person)
        return user_id

    async def apply(meeting_id: int, entry: Entry) -> None:
        d = validate(PresenterData, entry.data)
        if d.seq is not None and d.seq <= shown.get(meeting_id, -1):
            return  # the live copy was applied already (or a newer move was)
        rt = app[DOCUMENTS]
        board = rt.presenters
        if not d.active:
            state_now = await board.stop(meeting_id)
            await rt.sio.emit("present:state", state_now, room=meeting_room(meeting_id))
            _shown(meeting_id, d.seq)
            return
        doc, user_id = None, None
        if d.document and d.presenter is not None and d.page is not None:
            # Read at once: at the owner's first turn neither is known yet at any node of the
            # tree, and each read waits its turn for a core they all want.
            doc, user_id = await asyncio.gather(docs.get(meeting_id, d.document),
                                                presenter_here(d.presenter))
        if doc is None or not doc.published or d.presenter is None or d.page is None \
                or user_id is None:
            log.info("cascade: %s: presenting document %s, not (yet) here", entry.key,
                     d.document)
            return
        try:
            sizes = await rt.annotations.page_sizes(doc.id, doc.version)
        except DomainError as exc:  # not processed here yet: the next page turn finds it
            log.info("cascade: %s: presenting document %s: %s", entry.key, d.document, exc)
            docs.forget(meeting_id)  # (or a new version made current by another process)
            return
        if d.page >= len(sizes):
            return
        move: dict[str, Any] = {
            "user_id": user_id, "name": d.presenter.name, "document_id": doc.id,
            "version": doc.version, "page": d.page, "zoom": d.zoom or 1.0,
            "scroll_x": d.scroll_x or 0.0, "scroll_y": d.scroll_y or 0.0}
        room = meeting_room(meeting_id)
        if d.seq is not None and d.seq % SEQ_STEP:  # the owner's zoom or scroll on the page
            try:  # the same presenter moving: the board's cheap path (no write)
                state_now = await board.update(meeting_id, **move)
            except PresenterBusy:  # someone here presents: the owner's presenter takes over
                state_now = await board.update(meeting_id, **move, take_over=True)
            await rt.sio.emit("present:state", state_now, room=room)
        else:  # a major change: pushed from this process's copy first, written after (the
            # tablets see the page before this node's write; its journal entry is marked
            # applied only in that write's commit, or after it: nothing shown is lost)
            at = utcnow()
            ahead = board.ahead(meeting_id, **move, at=at)
            await rt.sio.emit("present:state", ahead, room=room)
            state_now = await board.take_over(meeting_id, **move, at=at, seq=ahead["seq"],
                                              also=entry.keep)
            if state_now["seq"] != ahead["seq"]:
                await rt.sio.emit("present:state", state_now, room=room)
        _shown(meeting_id, d.seq)

    def _shown(meeting_id: int, seq: int | None) -> None:
        if seq is not None:
            shown[meeting_id] = max(seq, shown.get(meeting_id, -1))

    async def apply_pointer(meeting_id: int, entry: Entry) -> None:
        d = validate(PointerData, entry.data)
        doc = await docs.get(meeting_id, d.document)
        if doc is None or not doc.published:
            return
        await app[DOCUMENTS].sio.emit("present:pointer", {
            "meeting_id": meeting_id, "document_id": doc.id, "page": d.page, "x": d.x,
            "y": d.y}, room=meeting_room(meeting_id))

    # `keeps`: its journaled copy, already shown from the live push, is stored marked
    # applied in one commit at every node (Journal._apply_keeping), not stored and then
    # marked in a second one.
    # `covers`: each entry is the whole presentation, so a node behind shows only the newest
    # of those queued (its older ones stored with it).
    state.register(Topic(TOPIC, PresenterData, "down", apply=apply, keeps=True,
                         covers=lambda _older, _newer: True))
    state.register(Topic(POINTER, PointerData, "down", apply=apply_pointer))
    app[keys.BUS].subscribe(PresenterMoved, moved)
    app[keys.BUS].subscribe(PresenterPointed, pointed)

    warming: set[asyncio.Task[None]] = set()  # a few reads each; held until done

    async def warm(document_id: int, owner: bool, copy: CopyChanged | None = None) -> None:
        """A published document's page sizes (its annotation log: three reads) loaded when it
        is ready (a copy: once its page 1 is), not at the first page turn that presents it,
        where every node of the tree would read them at the same moment (in
        bench/province.py the first turn was the page turns' tail: 47-77 ms for this step
        alone at each of 15 wards)."""
        try:
            if copy is not None:  # and the copy as the page turn finds it
                await docs.get(copy.meeting_id, copy.origin_id)
            async with app[keys.DB].session() as s:
                doc = await s.get(Document, document_id)
            if doc is not None and doc.published:
                await app[DOCUMENTS].annotations.page_sizes(document_id, doc.version)
                if owner and await _owner_doc(app, document_id):
                    cascaded.add(document_id)  # the owner's first turn reads it no more
        except DomainError:
            pass  # not processed yet: its processing ends with another DocumentChanged
        except Exception as exc:  # noqa: BLE001 - a warm-up: the page turn reads them itself
            log.info("cascade: page sizes of document %s not loaded ahead: %r", document_id, exc)

    async def document_changed(event: DocumentChanged | CopyChanged) -> None:
        docs.forget(event.meeting_id)
        if isinstance(event, CopyChanged) or event.published:
            copy = event if isinstance(event, CopyChanged) else None
            task = asyncio.create_task(warm(event.document_id, copy is None, copy))
            warming.add(task)
            task.add_done_callback(warming.discard)
    app[keys.BUS].subscribe(DocumentChanged, document_changed)
    app[keys.BUS].subscribe(CopyChanged, document_changed)
