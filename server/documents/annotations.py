"""Live annotations: every accepted op is stored before it is acknowledged, then pushed to
viewers (server/documents/annotation_push.py).

Each document's log lives in memory (server/documents/annotation_cache.py, rebuilt lazily
from the stored ops); what it no longer holds is read back from the database
(annotation_store.py). Ops on one document are serialised by a per-document lock, which also
orders the pushes; ops that arrive together are stored together (group commit, see `apply`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import socketio
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from documents import oplog
from documents.annotation_ops import AnnotationLog
from documents.annotations import (
    DEFAULT_LIMITS,
    Annotation,
    AnnotationError,
    AnnotationLimits,
    ErrorCode,
    parse_uuid,
)
from documents.op_records import Actor, OpRecord, OpResult, Trimmed, chain_events
from rooms.db import Database
from rooms.errors import DomainError, Invalid
from server.documents.annotation_cache import LogCache, NotReady, StaleVersion
from server.documents.annotation_push import push_op
from server.documents.annotation_store import (
    events_until,
    project,
    resent_ops,
    stored_row,
    version_of_op,
)
from server.documents.wire import wire_annotation, wire_event

MAX_BATCH = 64  # ops stored in one transaction at most


def annotation_error(exc: AnnotationError) -> Invalid:
    return Invalid(exc.message, code=exc.code.value)


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
    """Applies, stores and pushes ops, and answers reads, over the bounded `logs` cache."""

    def __init__(self, db: Database, sio: socketio.AsyncServer,
                 limits: AnnotationLimits = DEFAULT_LIMITS) -> None:
        self.db, self.sio = db, sio
        self.logs = LogCache(db, limits)
        self._queues: dict[int, list[_Queued]] = {}  # ops waiting for their document's writer
        self._writers: dict[int, asyncio.Task[None]] = {}

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
                    async with self.logs.lock(document_id):
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
        stored = await self._resent(document_id, batch)
        for item in batch:
            try:
                current = await self.logs.current(document_id, item.version)
                outcomes.append((item, current, self._apply(current, item.raw, item.viewer,
                                                            item.version, stored)))
            except DomainError as exc:  # refused: stores nothing (answered after the commit)
                outcomes.append(exc)
        new = [o for o in outcomes if not isinstance(o, DomainError) and not o[2].replayed]
        if new:
            try:
                async with self.db.session() as s:
                    for item, _, result in new:
                        s.add(stored_row(document_id, item.version, result.record,
                                         item.viewer.user_id))
            except IntegrityError:
                # An op id used on an earlier version, or another server process wrote to one
                # of these pages: nothing of the batch was stored; redo it op by op.
                self.logs.evict(document_id)
                outcomes = [await self._one(document_id, item) for item in batch]
            except BaseException:
                self.logs.evict(document_id)  # the log holds ops the database does not
                raise
        for item, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, DomainError):
                _settle(item.done, exc=outcome)
                continue
            _, current, result = outcome
            if not result.replayed:
                await push_op(self.sio, self.db, document_id, item.version, current,
                              result.record, item.viewer.user_id, item.viewer.actor, item.sid)
            own = await project(self.db, document_id, item.version, current, result.record,
                                item.viewer.actor)
            _settle(item.done, (result, wire_event(own) if own else None))
        self.logs.bound()  # the log grew

    async def _one(self, document_id: int, item: _Queued
                   ) -> tuple[_Queued, AnnotationLog, OpResult] | DomainError:
        """One op applied and stored on its own (the slow path after a failed batch)."""
        try:
            current = await self.logs.current(document_id, item.version)
            stored = await self._resent(document_id, [item])
            result = self._apply(current, item.raw, item.viewer, item.version, stored)
            if not result.replayed:
                result = await self._store(document_id, item.version, item.raw, item.viewer,
                                           result)
                current = await self.logs.current(document_id, item.version)  # maybe rebuilt
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

    async def _resent(self, document_id: int, batch: Sequence[_Queued]
                      ) -> dict[str, tuple[int, OpRecord]]:
        """The stored ops among `batch`'s op ids that the cached log no longer holds."""
        if self.logs.cached(document_id) is None and batch:
            try:  # load it now: a freshly rebuilt log may already have dropped records
                await self.logs.current(document_id, batch[0].version)
            except DomainError:
                pass  # answered per op
        return await resent_ops(self.db, document_id, self.logs.cached(document_id),
                                (item.raw for item in batch))

    async def _store(self, document_id: int, version: int, raw: Any, viewer: Viewer,
                     result: OpResult) -> OpResult:
        record = result.record
        try:
            async with self.db.session() as s:
                s.add(stored_row(document_id, version, record, viewer.user_id))
            return result
        except IntegrityError:
            # The op id was used on an earlier version, or another server process wrote to
            # this page: rebuild from the database and try once more.
            self.logs.evict(document_id)
            used_on = await version_of_op(self.db, document_id, record.op_id)
            if used_on is not None and used_on != version:
                raise StaleVersion("this op_id was used on an earlier version of the document"
                                   ) from None
            fresh = await self.logs.current(document_id, version)
            retried = self._apply(fresh, raw, viewer)
            if not retried.replayed:
                async with self.db.session() as s:
                    s.add(stored_row(document_id, version, retried.record, viewer.user_id))
            return retried
        except BaseException:
            self.logs.evict(document_id)  # the log holds an op the database does not
            raise

    # --- reads ---------------------------------------------------------------------------

    async def snapshot(self, document_id: int, version: int, viewer: Viewer,
                       pages: Sequence[int] | None = None) -> list[dict[str, Any]]:
        async with self.logs.lock(document_id):
            current = await self.logs.current(document_id, version)
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
        async with self.logs.lock(document_id):
            current = await self.logs.current(document_id, version)
            try:
                seq = current.page_state(page).last_visible_seq(actor)
                return [wire_event(e) for e in current.events_since(page, after_seq, actor)], seq
            except AnnotationError as exc:
                raise annotation_error(exc) from None
            except Trimmed:  # older than the in-memory window: the rest from the database
                state = current.page_state(page)
                window, base = list(state.records), state.base
        # Records up to `base` are stored and no longer change, so no lock is needed here.
        events, prev = await events_until(self.db, document_id, version, page, after_seq, base,
                                          actor)
        events += chain_events(window, page, prev, actor)[0]
        return [wire_event(e) for e in events], seq

    async def page_sizes(self, document_id: int, version: int) -> list[tuple[float, float]]:
        """Page sizes of the current version, from the cached log (no query when warm)."""
        async with self.logs.lock(document_id):
            current = await self.logs.current(document_id, version)
        return current.page_sizes

    async def visible(self, document_id: int, version: int, viewer: Viewer) -> list[Annotation]:
        async with self.logs.lock(document_id):
            current = await self.logs.current(document_id, version)
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
        async with self.logs.lock(document_id):
            records: list[OpRecord] = []
            try:
                old = await self.logs.current(document_id, old_version)
                records = oplog.carry_over(old, texts[0], texts[1], new_sizes, new_version,
                                           time.time())
            except (StaleVersion, NotReady):
                pass  # the old version was never usable: nothing to carry
            async with self.db.session() as s:
                for record in records:
                    author = int(record.actor_id)
                    s.add(stored_row(document_id, new_version, record, author))
                await commit(s)
            self.logs.fresh(document_id, new_version, new_sizes, records)
        return len(records)
