"""The stored annotation ops, read where the in-memory log no longer holds them: a resent op id
older than the log's window, a projection's prev_seq, a resync from an old seq. Records up to
a page's window base are stored and never change, so these reads need no lock.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from documents.annotation_ops import AnnotationLog
from documents.annotations import AnnotationError, parse_uuid
from documents.db_models import AnnotationOp
from documents.op_records import Actor, Event, OpRecord, Trimmed, chain_events, visible_in
from rooms.db import Database

STORED_CHUNK = 512  # stored records read per query when answering from the database


def stored_row(document_id: int, version: int, record: OpRecord, user_id: int) -> AnnotationOp:
    return AnnotationOp(document_id=document_id, version=version, page=record.page,
                        seq=record.seq, op_id=record.op_id, actor_id=user_id,
                        record=record.to_dict())


async def resent_ops(db: Database, document_id: int, log: AnnotationLog | None,
                     raws: Iterable[object]) -> dict[str, tuple[int, OpRecord]]:
    """The stored ops among `raws`' op ids that `log` no longer holds: {op_id: (version,
    record)}. One query, and only once the log has dropped records, so a resent op id stays
    idempotent however old it is."""
    if log is None or not log.trimmed:
        return {}
    ids = set()
    for raw in raws:
        if isinstance(raw, dict):
            try:
                op_id = parse_uuid(raw.get("op_id"), "op_id")
            except AnnotationError:
                continue
            if log.known_op(op_id) is None:
                ids.add(op_id)
    if not ids:
        return {}
    async with db.session() as s:
        rows = await s.exec(select(AnnotationOp.op_id, AnnotationOp.version,
                                   AnnotationOp.record).where(
            AnnotationOp.document_id == document_id, col(AnnotationOp.op_id).in_(ids)))
        return {op_id: (version, OpRecord.from_dict(dict(record)))
                for op_id, version, record in rows.all()}


async def version_of_op(db: Database, document_id: int, op_id: str) -> int | None:
    """The version the op id was stored on, if it was."""
    async with db.session() as s:
        rows = await s.exec(select(AnnotationOp.version).where(
            AnnotationOp.document_id == document_id, AnnotationOp.op_id == op_id))
        return rows.first()


async def project(db: Database, document_id: int, version: int, current: AnnotationLog,
                  record: OpRecord, actor: Actor) -> Event | None:
    """`record` as `actor` sees it; from the database when older than the log's window."""
    try:
        return current.project(record, actor)
    except Trimmed:  # e.g. a resent op older than the in-memory window
        pass
    if not visible_in(record, actor):
        return None
    async with db.session() as s:
        prev = await _last_visible(s, document_id, version, record.page, record.seq, actor)
    return chain_events([record], record.page, prev, actor)[0][0]


async def events_until(db: Database, document_id: int, version: int, page: int,
                       after_seq: int, base: int, actor: Actor) -> tuple[list[Event], int]:
    """The page's events after `after_seq` up to `base` (stored records) as `actor` sees them,
    and the last visible seq among them (for chaining the in-memory window on)."""
    start = max(after_seq, 0)
    events: list[Event] = []
    async with db.session() as s:
        prev = await _last_visible(s, document_id, version, page, start + 1, actor)
        while start < base:
            rows = await s.exec(select(AnnotationOp.record).where(
                AnnotationOp.document_id == document_id, AnnotationOp.version == version,
                AnnotationOp.page == page, col(AnnotationOp.seq) > start,
                col(AnnotationOp.seq) <= base).order_by(col(AnnotationOp.seq))
                .limit(STORED_CHUNK))
            records = [OpRecord.from_dict(dict(r)) for r in rows.all()]
            if not records:
                break
            chained, prev = chain_events(records, page, prev, actor)
            events += chained
            start = records[-1].seq
    return events, prev


async def _last_visible(s: AsyncSession, document_id: int, version: int, page: int,
                        before_seq: int, actor: Actor) -> int:
    """The last seq below `before_seq` that `actor` could see, from the stored records."""
    below = before_seq
    while below > 1:
        rows = await s.exec(select(AnnotationOp.record).where(
            AnnotationOp.document_id == document_id, AnnotationOp.version == version,
            AnnotationOp.page == page, col(AnnotationOp.seq) < below
        ).order_by(col(AnnotationOp.seq).desc()).limit(STORED_CHUNK))
        records = [OpRecord.from_dict(dict(r)) for r in rows.all()]
        if not records:
            break
        for record in records:
            if visible_in(record, actor):
                return record.seq
        below = records[-1].seq
    return 0
