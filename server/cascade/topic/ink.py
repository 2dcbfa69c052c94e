"""Shared ink across nodes (issue 13, item 2): the topics ``ink.share`` (up) and
``ink.shared`` (down).

Only what the whole meeting may see crosses a link: of every accepted op, the annotations
that are (or were) shared with the meeting (`Visibility.MEETING`), as they now are, or
`None` for one no longer shared (deleted, or made private again: then only its id
crosses). Private ink, and ink shown only to presenters, never leave the author's node.

* A shared op at a node that mirrors the meeting is applied there at once (its tablets see
  it, and it is acknowledged as stored there, link or no link) and reported up; the owner
  applies it as an op of the author's placeholder person (documents_people.py), then
  journals it with every shared op made at the owner.
* Every node applies the journal's ink in order as ordinary ops (so the existing seq,
  prev_seq and resync rules hold for its tablets), skipping what was made at that node.
  The op ids are derived from the original op and annotation, so a re-applied entry is a
  replay, never a second stroke.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from aiohttp import web
from pydantic import Field
from sqlmodel import select

from documents.annotations import Annotation, AnnotationError, Visibility
from documents.db_models import Document
from documents.mirror_models import DocumentCascade
from documents.op_records import OpRecord
from rooms.errors import DomainError, Invalid
from server.cascade.schemas import NodeError, NodeSchema, validate
from server.cascade.state import MeetingState
from server.cascade.topic.documents_people import Person, local_user, person_of
from server.cascade.topics import Entry, Report, Topic
from server.core import keys
from server.documents.annotations import Viewer
from server.documents.events import AnnotationAccepted
from server.documents.keys import DOCUMENTS

log = logging.getLogger(__name__)

DOWN, UP = "ink.shared", "ink.share"
_UUID = r"^[0-9a-fA-F-]{36}$"
_NAMESPACE = uuid.UUID("6f1d4a52-3c0e-4d55-9a5e-0c9a1b7e2d10")
MAX_ITEMS = 64


class InkItem(NodeSchema):
    id: str = Field(pattern=_UUID)
    annotation: dict[str, Any] | None  # the shared annotation now; None: no longer shared


class InkData(NodeSchema):
    document: int = Field(ge=1, le=2**31 - 1)  # the owner's document id
    version: int = Field(ge=1, le=100_000)
    page: int = Field(ge=0, le=100_000)
    op: str = Field(pattern=_UUID)  # the op at the author's node
    author: Person
    items: list[InkItem] = Field(min_length=1, max_length=MAX_ITEMS)


def _shared(annotation: Annotation | None) -> bool:
    return annotation is not None and annotation.visibility is Visibility.MEETING


def shared_items(record: OpRecord) -> list[dict[str, Any]]:
    """What of an op the meeting may see: nothing of private ink."""
    items: list[dict[str, Any]] = []
    for effect in record.effects:
        if _shared(effect.after):
            assert effect.after is not None
            items.append({"id": effect.annotation_id, "annotation": effect.after.to_dict()})
        elif _shared(effect.before):
            items.append({"id": effect.annotation_id, "annotation": None})
    return items


def op_id(origin: str, op: str, annotation_id: str) -> str:
    """The op id every other node uses for one annotation of one original op."""
    return str(uuid.uuid5(_NAMESPACE, f"{origin}|{op}|{annotation_id}"))


async def apply_items(app: web.Application, document_id: int, d: InkData) -> int:
    """Apply `d` to a local document as ops of its author's placeholder; returns how many
    ops changed something. DomainError (e.g. a stale version) refuses the rest."""
    hub = app[DOCUMENTS].annotations
    async with app[keys.DB].session() as s:
        user_id = await local_user(s, d.author)
    viewer = Viewer(user_id, False)
    applied = 0
    for item in d.items:
        async with hub.logs.lock(document_id):
            current = await hub.logs.current(document_id, d.version)
            try:
                present = item.id in current.page_state(d.page).annotations
            except AnnotationError as exc:  # a page the document does not have
                raise Invalid(exc.message, code=exc.code.value) from None
        base = {"op_id": op_id(d.author.origin, d.op, item.id), "page": d.page}
        if item.annotation is None:
            if not present:
                continue
            raw = {**base, "type": "delete", "ids": [item.id]}
        else:
            raw = {**base, "type": "update" if present else "add",
                   "annotation": {**item.annotation, "id": item.id}}
        result, _ = await hub.apply(document_id, d.version, raw, viewer)
        applied += 0 if result.replayed else 1
    return applied


async def _cascaded(app: web.Application, document_id: int) -> DocumentCascade | None:
    async with app[keys.DB].session() as s:
        return await s.get(DocumentCascade, document_id)


def install(app: web.Application, state: MeetingState) -> None:
    unit = state.unit

    async def accepted(event: AnnotationAccepted) -> None:
        items = shared_items(event.record)
        if not items:
            return  # private (or presenters-only) ink stays here
        row = await _cascaded(app, event.document_id)
        if row is None:
            return  # a document of this node only
        async with app[keys.DB].session() as s:
            doc = await s.get(Document, event.document_id)
            person = await person_of(s, unit, event.user_id)
        if person is None or doc is None or not doc.published:
            return  # a draft's notes stay with its managers
        for start in range(0, len(items), MAX_ITEMS):
            data = {"document": row.origin_id or row.document_id, "version": event.version,
                    "page": event.record.page, "op": event.record.op_id,
                    "author": person.model_dump(), "items": items[start:start + MAX_ITEMS]}
            try:
                if row.origin_id is None:
                    await state.publish(row.meeting_id, DOWN, data)
                else:  # stored here before the tablet's ack is answered; delivered when linked
                    await state.report(row.meeting_id, UP, data)
            except NodeError as exc:  # e.g. a stroke of thousands of points: over 64 kB
                log.warning("cascade: shared op %s on document %d does not cross nodes: "
                            "%s: %s", event.record.op_id, event.document_id, exc.code,
                            exc.message)

    async def receive(meeting_id: int, via: str, report: Report) -> dict[str, Any]:
        d = validate(InkData, report.data)
        if d.author.origin != report.origin:
            raise NodeError("forbidden", f"{report.origin} reported ink of a person of "
                                         f"{d.author.origin}")
        if any(i.annotation is not None and i.annotation.get("visibility") != "meeting"
               for i in d.items):
            raise NodeError("invalid", "only ink shared with the meeting crosses nodes")
        async with app[keys.DB].session() as s:
            row = await s.get(DocumentCascade, d.document)
            doc = await s.get(Document, d.document)
        if row is None or row.origin_id is not None or row.meeting_id != meeting_id \
                or doc is None or not doc.published:
            raise NodeError("not_found", f"document {d.document} is not in this meeting")
        if doc.version != d.version:
            raise NodeError("stale_version", f"version {d.version} is not current "
                                             f"({doc.version})")
        try:
            applied = await apply_items(app, d.document, d)
        except DomainError as exc:
            raise NodeError(exc.code, exc.message[:200]) from None
        await state.publish(meeting_id, DOWN, report.data)
        return {"applied": applied}

    async def apply(meeting_id: int, entry: Entry) -> None:
        d = validate(InkData, entry.data)
        if d.author.origin == unit:
            return  # made here: applied when it was made
        async with app[keys.DB].session() as s:
            row = (await s.exec(select(DocumentCascade).where(
                DocumentCascade.meeting_id == meeting_id,
                DocumentCascade.origin_id == d.document))).first()
            doc = await s.get(Document, row.document_id) if row is not None else None
        if doc is None or doc.id is None or doc.version != d.version:
            log.info("cascade: %s #%d: ink on document %d version %d, not here", entry.key,
                     entry.seq, d.document, d.version)
            return
        try:
            await apply_items(app, doc.id, d)
        except DomainError as exc:
            log.warning("cascade: %s #%d: ink not applied: %s", entry.key, entry.seq, exc)

    state.register(Topic(UP, InkData, "up", receive=receive))
    state.register(Topic(DOWN, InkData, "down", apply=apply))
    app[keys.BUS].subscribe(AnnotationAccepted, accepted)
