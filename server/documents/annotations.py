"""Live annotations: one in-memory AnnotationLog per document version, rebuilt lazily from the
stored ops; every accepted op is stored before it is acknowledged, then pushed to viewers.

Pushes (docs/protocol.md (Documents)): the author's connections get the op as they see it
(`own: true`); the document's other subscribers get it projected for their class — everyone
(`meeting` annotations) or presenters (plus `presenter` ones) — and nothing for ops they may
not see. Ops on one document are serialised by a per-document lock, which also orders the
pushes; ops that arrive together are stored together (group commit, see `apply`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import socketio
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from documents import oplog
from documents.annotation_ops import (
    DEFAULT_MAX_RECORDS,
    Actor,
    AnnotationLog,
    Event,
    OpRecord,
    OpResult,
    Trimmed,
    chain_events,
    visible_in,
)
from documents.annotations import (
    DEFAULT_LIMITS,
    Annotation,
    AnnotationError,
    AnnotationLimits,
    ErrorCode,
    parse_uuid,
)
from documents.db_models import AnnotationOp, Document, DocumentVersion
from rooms.db import Database
from rooms.errors import Conflict, DomainError, Invalid, NotFound
from server.core.realtime import user_room
from server.documents.wire import wire_annotation, wire_event

log = logging.getLogger(__name__)
MAX_BATCH = 64  # ops stored in one transaction at most
STORED_CHUNK = 512  # stored records read per query when answering from the database
GENERIC = Actor("", is_presenter=False)  # any subscriber who is neither author nor presenter
PRESENTER = Actor("", is_presenter=True)


def doc_room(document_id: int, presenters: bool) -> str:
    return f"document:{document_id}:{'p' if presenters else 'v'}"


class StaleVersion(Conflict):
    code = "stale_version"


class NotReady(Conflict):
    code = "not_ready"


def annotation_error(exc: AnnotationError) -> Invalid:
    return Invalid(exc.message, code=exc.code.value)


@dataclass
class _Cached:
    version: int
    log: AnnotationLog


@dataclass(frozen=True)
class Viewer:
    user_id: int
    is_presenter: bool

    @property
    def actor(self) -> Actor:
        return Actor(str(self.user_id), self.is_presenter)


@dataclass
class _Queued:
    """An op waiting for its document's writer."""

    version: int
    raw: Any
    viewer: Viewer
    sid: str | None
    done: asyncio.Future[tuple[OpResult, dict[str, Any] | None]]


def _settle(done: asyncio.Future[Any], result: Any = None, *,
            exc: BaseException | None = None) -> None:
    if done.done():  # the caller went away (cancelled); the op was still handled
        return
    if exc is not None:
        done.set_exception(exc)
    else:
        done.set_result(result)


class AnnotationHub:
    """Memory is bounded: each cached log keeps its newest `max_records` records (older ones
    are read from the database when a resync or a resent op id needs them), and the cache
    holds at most `max_cached` documents and `max_cached_entries` records + live annotations
    in all (least recently used first out)."""

    def __init__(self, db: Database, sio: socketio.AsyncServer,
                 limits: AnnotationLimits = DEFAULT_LIMITS, max_cached: int = 256,
                 max_records: int = DEFAULT_MAX_RECORDS,
                 max_cached_entries: int = 32 * DEFAULT_MAX_RECORDS) -> None:
        self.db, self.sio, self.limits, self.max_cached = db, sio, limits, max_cached
        self.max_records, self.max_cached_entries = max_records, max_cached_entries
        self._logs: OrderedDict[int, _Cached] = OrderedDict()
        self._locks: dict[int, asyncio.Lock] = {}
        self._queues: dict[int, list[_Queued]] = {}  # ops waiting for their document's writer
        self._writers: dict[int, asyncio.Task[None]] = {}

    def lock(self, document_id: int) -> asyncio.Lock:
        return self._locks.setdefault(document_id, asyncio.Lock())

    def evict(self, document_id: int) -> None:
        self._logs.pop(document_id, None)

    async def _current(self, document_id: int, version: int) -> AnnotationLog:
        """The log of `version`, which must be the document's current one (call under lock)."""
        cached = self._logs.get(document_id)
        if cached is not None and cached.version == version:
            self._logs.move_to_end(document_id)
            return cached.log
        async with self.db.session() as s:
            doc = await s.get(Document, document_id)
            if doc is None:
                raise NotFound(f"document {document_id} not found")
            if doc.version != version:
                raise StaleVersion(f"version {version} is not the current version "
                                   f"({doc.version}); take a new snapshot")
            sizes = await _page_sizes(s, document_id, version)
            rows = await s.exec(select(AnnotationOp.record).where(
                AnnotationOp.document_id == document_id, AnnotationOp.version == version))
            records = list(rows.all())
        built = oplog.rebuild(str(document_id), sizes, records, self.limits, self.max_records)
        self._remember(document_id, version, built)
        return built

    def _remember(self, document_id: int, version: int, built: AnnotationLog) -> None:
        self._logs[document_id] = _Cached(version, built)
        self._logs.move_to_end(document_id)
        self._bound_cache()

    def _bound_cache(self) -> None:
        """Evict least recently used logs past the document or size cap (never the newest)."""
        while len(self._logs) > self.max_cached:
            self._logs.popitem(last=False)
        if len(self._logs) > 1:
            total = sum(c.log.entries for c in self._logs.values())
            while total > self.max_cached_entries and len(self._logs) > 1:
                total -= self._logs.popitem(last=False)[1].log.entries

    def cached_entries(self, document_id: int) -> int:
        """Records + live annotations held in memory for the document (0 if not cached)."""
        cached = self._logs.get(document_id)
        return cached.log.entries if cached is not None else 0

    # --- ops -----------------------------------------------------------------------------

    async def apply(self, document_id: int, version: int, raw: Any, viewer: Viewer,
                    sid: str | None = None) -> tuple[OpResult, dict[str, Any] | None]:
        """Apply, store, push; returns the result and the op as the author sees it.

        Group commit: the op joins its document's queue; the document's writer applies what
        is queued, stores every accepted op of the batch in one transaction, then pushes them
        in order and answers. Ops arriving while a batch is being stored form the next one, so
        a burst of strokes costs one commit, not one each. Nothing is answered or pushed
        before its transaction has committed; if it fails, every op of the batch is refused.
        """
        done: asyncio.Future[tuple[OpResult, dict[str, Any] | None]] = \
            asyncio.get_running_loop().create_future()
        self._queues.setdefault(document_id, []).append(
            _Queued(version, raw, viewer, sid, done))
        if document_id not in self._writers:
            self._writers[document_id] = asyncio.create_task(self._write(document_id))
        return await done

    async def _write(self, document_id: int) -> None:
        """The document's writer: drains its queue batch by batch, then ends."""
        queue = self._queues[document_id]
        try:
            while queue:
                batch = queue[:MAX_BATCH]
                del queue[:MAX_BATCH]
                try:
                    async with self.lock(document_id):
                        await self._write_batch(document_id, batch)
                except BaseException as exc:
                    for item in batch:
                        _settle(item.done, exc=exc)
                    if not isinstance(exc, Exception):
                        raise  # cancelled: the rest of the queue is refused below
        finally:
            for item in queue:  # only when cancelled (shutdown)
                _settle(item.done, exc=asyncio.CancelledError())
            del self._writers[document_id]
            del self._queues[document_id]

    async def _write_batch(self, document_id: int, batch: list[_Queued]) -> None:
        """Apply, store (one transaction), push and answer `batch`; call under the lock."""
        outcomes: list[tuple[_Queued, AnnotationLog, OpResult] | DomainError] = []
        stored = await self._stored_ops(document_id, batch)
        for item in batch:
            try:
                current = await self._current(document_id, item.version)
                outcomes.append((item, current, self._apply(current, item.raw, item.viewer,
                                                            item.version, stored)))
            except DomainError as exc:  # refused: stores nothing (answered after the commit)
                outcomes.append(exc)
        new = [o for o in outcomes if not isinstance(o, DomainError) and not o[2].replayed]
        if new:
            try:
                async with self.db.session() as s:
                    for item, _, result in new:
                        s.add(_row(document_id, item.version, result.record,
                                   item.viewer.user_id))
            except IntegrityError:
                # An op id used on an earlier version, or another server process wrote to one
                # of these pages: nothing of the batch was stored; redo it op by op.
                self.evict(document_id)
                outcomes = [await self._one(document_id, item) for item in batch]
            except BaseException:
                self.evict(document_id)  # the log holds ops the database does not
                raise
        for item, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, DomainError):
                _settle(item.done, exc=outcome)
                continue
            _, current, result = outcome
            if not result.replayed:
                await self._push(document_id, item.version, current, result.record,
                                 item.viewer, item.sid)
            own = await self._project(document_id, item.version, current, result.record,
                                      item.viewer.actor)
            _settle(item.done, (result, wire_event(own) if own else None))
        self._bound_cache()  # the log grew

    async def _one(self, document_id: int, item: _Queued
                   ) -> tuple[_Queued, AnnotationLog, OpResult] | DomainError:
        """One op applied and stored on its own (the slow path after a failed batch)."""
        try:
            current = await self._current(document_id, item.version)
            stored = await self._stored_ops(document_id, [item])
            result = self._apply(current, item.raw, item.viewer, item.version, stored)
            if not result.replayed:
                result = await self._store(document_id, item.version, item.raw, item.viewer,
                                           result)
                current = await self._current(document_id, item.version)  # maybe rebuilt
            return item, current, result
        except DomainError as exc:
            return exc

    def _apply(self, current: AnnotationLog, raw: Any, viewer: Viewer, version: int | None = None,
               stored: dict[str, tuple[int, OpRecord]] | None = None) -> OpResult:
        """Apply `raw`; an op id found in `stored` (accepted before, no longer in memory)
        answers as the in-memory log would: replayed, or refused."""
        if stored and isinstance(raw, dict):
            try:
                op_id = parse_uuid(raw.get("op_id"), "op_id")
            except AnnotationError:
                op_id = ""
            if op_id in stored and current.known_op(op_id) is None:
                used_on, record = stored[op_id]
                if used_on != version:
                    raise StaleVersion("this op_id was used on an earlier version of the "
                                       "document")
                if record.actor_id != viewer.actor.user_id:
                    raise annotation_error(AnnotationError(
                        ErrorCode.OP_ID_CONFLICT, "op_id already used by another user"))
                return OpResult(record, replayed=True)
        try:
            return current.apply(raw, viewer.actor)
        except AnnotationError as exc:
            raise annotation_error(exc) from None

    async def _stored_ops(self, document_id: int, batch: Sequence[_Queued]
                          ) -> dict[str, tuple[int, OpRecord]]:
        """The stored ops among `batch`'s op ids that the cached log no longer holds:
        {op_id: (version, record)}. One query, and only once the log has dropped records,
        so a resent op id stays idempotent however old it is."""
        if document_id not in self._logs and batch:
            try:  # load it now: a freshly rebuilt log may already have dropped records
                await self._current(document_id, batch[0].version)
            except DomainError:
                pass  # answered per op
        cached = self._logs.get(document_id)
        if cached is None or not cached.log.trimmed:
            return {}
        ids = set()
        for item in batch:
            if isinstance(item.raw, dict):
                try:
                    op_id = parse_uuid(item.raw.get("op_id"), "op_id")
                except AnnotationError:
                    continue
                if cached.log.known_op(op_id) is None:
                    ids.add(op_id)
        if not ids:
            return {}
        async with self.db.session() as s:
            rows = await s.exec(select(AnnotationOp.op_id, AnnotationOp.version,
                                       AnnotationOp.record).where(
                AnnotationOp.document_id == document_id, col(AnnotationOp.op_id).in_(ids)))
            return {op_id: (version, OpRecord.from_dict(dict(record)))
                    for op_id, version, record in rows.all()}

    async def _last_visible_stored(self, s: AsyncSession, document_id: int, version: int,
                                   page: int, before_seq: int, actor: Actor) -> int:
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

    async def _project(self, document_id: int, version: int, current: AnnotationLog,
                       record: OpRecord, actor: Actor) -> Event | None:
        try:
            return current.project(record, actor)
        except Trimmed:  # e.g. a resent op older than the in-memory window
            return await self._project_stored(document_id, version, record, actor)

    async def _project_stored(self, document_id: int, version: int, record: OpRecord,
                              actor: Actor) -> Event | None:
        """`record` as `actor` sees it, its prev_seq read from the database."""
        if not visible_in(record, actor):
            return None
        async with self.db.session() as s:
            prev = await self._last_visible_stored(s, document_id, version, record.page,
                                                   record.seq, actor)
        return chain_events([record], record.page, prev, actor)[0][0]

    async def _store(self, document_id: int, version: int, raw: Any, viewer: Viewer,
                     result: OpResult) -> OpResult:
        record = result.record
        try:
            async with self.db.session() as s:
                s.add(_row(document_id, version, record, viewer.user_id))
            return result
        except IntegrityError:
            # The op id was used on an earlier version, or another server process wrote to
            # this page: rebuild from the database and try once more.
            self.evict(document_id)
            async with self.db.session() as s:
                rows = await s.exec(select(AnnotationOp.version).where(
                    AnnotationOp.document_id == document_id, AnnotationOp.op_id == record.op_id))
                used_on = rows.first()
            if used_on is not None and used_on != version:
                raise StaleVersion("this op_id was used on an earlier version of the document"
                                   ) from None
            fresh = await self._current(document_id, version)
            retried = self._apply(fresh, raw, viewer)
            if not retried.replayed:
                async with self.db.session() as s:
                    s.add(_row(document_id, version, retried.record, viewer.user_id))
            return retried
        except BaseException:
            self.evict(document_id)  # the log holds an op the database does not
            raise

    async def _push(self, document_id: int, version: int, current: AnnotationLog,
                    record: OpRecord, author: Viewer, sid: str | None) -> None:
        base = {"document_id": document_id, "version": version, "actor_id": record.actor_id}
        generic, presenter = [await self._project(document_id, version, current, record, viewer)
                              for viewer in (GENERIC, PRESENTER)]
        if generic is not None and generic == presenter:
            # The usual case (a `meeting` stroke): both classes see the same event, so it is
            # encoded once and sent to both rooms in one emit.
            await self.sio.emit("annotation:event",
                                {**base, "own": False, "event": wire_event(generic)},
                                to=[doc_room(document_id, False), doc_room(document_id, True)],
                                skip_sid=sid)
        else:
            for presenters, event in ((False, generic), (True, presenter)):
                if event is not None:
                    await self.sio.emit("annotation:event",
                                        {**base, "own": False, "event": wire_event(event)},
                                        room=doc_room(document_id, presenters), skip_sid=sid)
        own = await self._project(document_id, version, current, record, author.actor)
        if own is not None:
            await self.sio.emit("annotation:event", {**base, "own": True, "event": wire_event(own)},
                                room=user_room(author.user_id), skip_sid=sid)

    # --- reads ---------------------------------------------------------------------------

    async def snapshot(self, document_id: int, version: int, viewer: Viewer,
                       pages: Sequence[int] | None = None) -> list[dict[str, Any]]:
        async with self.lock(document_id):
            current = await self._current(document_id, version)
        actor = viewer.actor
        wanted = sorted(set(pages)) if pages is not None else sorted(current.pages)
        out = []
        for page in wanted:
            try:
                annotations, seq = current.snapshot(page, actor)
            except AnnotationError as exc:
                raise annotation_error(exc) from None
            if pages is not None or annotations or seq:
                out.append({"page": page, "seq": seq,
                            "annotations": [wire_annotation(a) for a in annotations]})
        return out

    async def since(self, document_id: int, version: int, viewer: Viewer, page: int,
                    after_seq: int) -> tuple[list[dict[str, Any]], int]:
        actor = viewer.actor
        async with self.lock(document_id):
            current = await self._current(document_id, version)
            try:
                seq = current.page_state(page).last_visible_seq(actor)
                return [wire_event(e) for e in current.events_since(page, after_seq, actor)], seq
            except AnnotationError as exc:
                raise annotation_error(exc) from None
            except Trimmed:  # older than the in-memory window: the rest from the database
                state = current.page_state(page)
                window, base = list(state.records), state.base
        # Records up to `base` are stored and no longer change, so no lock is needed here.
        start = max(after_seq, 0)
        events: list[Event] = []
        async with self.db.session() as s:
            prev = await self._last_visible_stored(s, document_id, version, page, start + 1,
                                                   actor)
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
        events += chain_events(window, page, prev, actor)[0]
        return [wire_event(e) for e in events], seq

    async def page_sizes(self, document_id: int, version: int) -> list[tuple[float, float]]:
        """Page sizes of the current version, from the cached log (no query when warm)."""
        async with self.lock(document_id):
            current = await self._current(document_id, version)
        return current.page_sizes

    async def visible(self, document_id: int, version: int, viewer: Viewer) -> list[Annotation]:
        async with self.lock(document_id):
            current = await self._current(document_id, version)
        return oplog.visible_annotations(current, str(viewer.user_id), viewer.is_presenter)

    # --- new versions --------------------------------------------------------------------

    async def switch_version(self, document_id: int, old_version: int, new_version: int,
                             texts: tuple[Sequence[str], Sequence[str]],
                             new_sizes: Sequence[tuple[float, float]],
                             commit: Callable[[AsyncSession], Awaitable[None]]) -> int:
        """Carry annotations to `new_version` and make it current (in `commit`'s transaction).

        Returns how many annotations were carried over. Holding the document's lock, no op can
        land on the old version in between; later ops for it get `stale_version`.
        """
        async with self.lock(document_id):
            records: list[OpRecord] = []
            try:
                old = await self._current(document_id, old_version)
                records = oplog.carry_over(old, texts[0], texts[1], new_sizes, new_version,
                                           time.time())
            except (StaleVersion, NotReady):
                pass  # the old version was never usable: nothing to carry
            async with self.db.session() as s:
                for record in records:
                    author = int(record.actor_id)
                    s.add(_row(document_id, new_version, record, author))
                await commit(s)
            fresh = AnnotationLog(str(document_id), list(new_sizes), limits=self.limits,
                                  max_records=self.max_records)
            self._remember(document_id, new_version, oplog.replay(fresh, records))
        return len(records)


def _row(document_id: int, version: int, record: OpRecord, user_id: int) -> AnnotationOp:
    return AnnotationOp(document_id=document_id, version=version, page=record.page,
                        seq=record.seq, op_id=record.op_id, actor_id=user_id,
                        record=record.to_dict())


async def _page_sizes(s: AsyncSession, document_id: int, version: int
                      ) -> list[tuple[float, float]]:
    rows = await s.exec(select(DocumentVersion).where(
        DocumentVersion.document_id == document_id, col(DocumentVersion.number) == version))
    found = rows.first()
    if found is None or not found.status.usable or not found.page_sizes:
        raise NotReady("the document is not processed yet; annotations open when it is ready")
    return [(float(w), float(h)) for w, h in found.page_sizes]
