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
from documents.annotation_ops import Actor, AnnotationLog, OpRecord, OpResult
from documents.annotations import DEFAULT_LIMITS, Annotation, AnnotationError, AnnotationLimits
from documents.db_models import AnnotationOp, Document, DocumentVersion
from rooms.db import Database
from rooms.errors import Conflict, DomainError, Invalid, NotFound
from server.realtime import user_room

log = logging.getLogger(__name__)
MAX_BATCH = 64  # ops stored in one transaction at most
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
    def __init__(self, db: Database, sio: socketio.AsyncServer,
                 limits: AnnotationLimits = DEFAULT_LIMITS, max_cached: int = 256) -> None:
        self.db, self.sio, self.limits, self.max_cached = db, sio, limits, max_cached
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
        built = oplog.rebuild(str(document_id), sizes, records, self.limits)
        self._remember(document_id, version, built)
        return built

    def _remember(self, document_id: int, version: int, built: AnnotationLog) -> None:
        self._logs[document_id] = _Cached(version, built)
        self._logs.move_to_end(document_id)
        while len(self._logs) > self.max_cached:
            self._logs.popitem(last=False)

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
        for item in batch:
            try:
                current = await self._current(document_id, item.version)
                outcomes.append((item, current, self._apply(current, item.raw, item.viewer)))
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
            own = current.project(result.record, item.viewer.actor)
            _settle(item.done, (result, own.to_dict() if own else None))

    async def _one(self, document_id: int, item: _Queued
                   ) -> tuple[_Queued, AnnotationLog, OpResult] | DomainError:
        """One op applied and stored on its own (the slow path after a failed batch)."""
        try:
            current = await self._current(document_id, item.version)
            result = self._apply(current, item.raw, item.viewer)
            if not result.replayed:
                result = await self._store(document_id, item.version, item.raw, item.viewer,
                                           result)
                current = await self._current(document_id, item.version)  # maybe rebuilt
            return item, current, result
        except DomainError as exc:
            return exc

    def _apply(self, current: AnnotationLog, raw: Any, viewer: Viewer) -> OpResult:
        try:
            return current.apply(raw, viewer.actor)
        except AnnotationError as exc:
            raise annotation_error(exc) from None

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
        generic, presenter = (current.project(record, viewer) for viewer in (GENERIC, PRESENTER))
        if generic is not None and generic == presenter:
            # The usual case (a `meeting` stroke): both classes see the same event, so it is
            # encoded once and sent to both rooms in one emit.
            await self.sio.emit("annotation:event",
                                {**base, "own": False, "event": generic.to_dict()},
                                to=[doc_room(document_id, False), doc_room(document_id, True)],
                                skip_sid=sid)
        else:
            for presenters, event in ((False, generic), (True, presenter)):
                if event is not None:
                    await self.sio.emit("annotation:event",
                                        {**base, "own": False, "event": event.to_dict()},
                                        room=doc_room(document_id, presenters), skip_sid=sid)
        own = current.project(record, author.actor)
        if own is not None:
            await self.sio.emit("annotation:event", {**base, "own": True, "event": own.to_dict()},
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
                            "annotations": [a.to_dict() for a in annotations]})
        return out

    async def since(self, document_id: int, version: int, viewer: Viewer, page: int,
                    after_seq: int) -> tuple[list[dict[str, Any]], int]:
        async with self.lock(document_id):
            current = await self._current(document_id, version)
        try:
            events = current.events_since(page, after_seq, viewer.actor)
            seq = current.page_state(page).last_visible_seq(viewer.actor)
        except AnnotationError as exc:
            raise annotation_error(exc) from None
        return [e.to_dict() for e in events], seq

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
            fresh = AnnotationLog(str(document_id), list(new_sizes), limits=self.limits)
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
