"""Live annotations: one in-memory AnnotationLog per document version, rebuilt lazily from the
stored ops; every accepted op is stored before it is acknowledged, then pushed to viewers.

Pushes (docs/protocol.md (Documents)): the author's connections get the op as they see it
(`own: true`); the document's other subscribers get it projected for their class — everyone
(`meeting` annotations) or presenters (plus `presenter` ones) — and nothing for ops they may
not see. Ops on one document are serialised by a per-document lock, which also orders the
pushes.
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
from rooms.errors import Conflict, Invalid, NotFound
from server.realtime import user_room

log = logging.getLogger(__name__)
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


class AnnotationHub:
    def __init__(self, db: Database, sio: socketio.AsyncServer,
                 limits: AnnotationLimits = DEFAULT_LIMITS, max_cached: int = 256) -> None:
        self.db, self.sio, self.limits, self.max_cached = db, sio, limits, max_cached
        self._logs: OrderedDict[int, _Cached] = OrderedDict()
        self._locks: dict[int, asyncio.Lock] = {}

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
        """Apply, store, push; returns the result and the op as the author sees it."""
        async with self.lock(document_id):
            current = await self._current(document_id, version)
            result = self._apply(current, raw, viewer)
            if not result.replayed:
                result = await self._store(document_id, version, raw, viewer, result)
            own = current.project(result.record, viewer.actor)
            if not result.replayed:
                await self._push(document_id, version, current, result.record, viewer, sid)
        return result, own.to_dict() if own else None

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
        for presenters, viewer in ((False, GENERIC), (True, PRESENTER)):
            event = current.project(record, viewer)
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
