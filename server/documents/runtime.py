"""What the documents feature holds while the app runs: the worker pool, the blob store, the
live annotation logs, the presenters, the access log and the loop-lag monitor.

Created and closed in the app's cleanup_ctx (after the database), so nothing is module-level.
The worker pool starts its processes lazily, on the first job.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from statistics import quantiles
from typing import Any

import socketio
from aiohttp import web
from prometheus_client import Histogram

from documents import catalog
from documents.db_models import Document, DocumentAccess
from documents.page_cache import ByteLRU
from documents.search_text import PageTextIndex
from documents.storage import BlobStore
from documents.validation import Limits
from documents.worker_pool import WorkerPool
from rooms.db import Database
from server.core import keys
from server.core.bus import Bus
from server.core.realtime import meeting_room, user_room
from server.documents.annotations import AnnotationHub
from server.documents.keys import DOCUMENTS
from server.documents.presenter import PresenterBoard

log = logging.getLogger(__name__)


class AccessLog:
    """Buffers access rows and writes them about once a second (page fetches are frequent)."""

    def __init__(self, db: Database, interval_s: float = 1.0) -> None:
        self.db, self.interval_s = db, interval_s
        self._pending: list[DocumentAccess] = []
        self._writing = asyncio.Lock()  # a flush waits for one already writing

    def record(self, document_id: int, version: int | None, user_id: int, kind: str,
               page: int | None = None) -> None:
        self._pending.append(DocumentAccess(document_id=document_id, version=version,
                                            user_id=user_id, kind=kind, page=page))

    async def record_now(self, document_id: int, version: int | None, user_id: int, kind: str,
                         page: int | None = None) -> None:
        """Written before it returns, after the rows still waiting (the log keeps its order):
        a confidential document's content is served only once its read is in the log.
        Raises when the rows cannot be written; the waiting ones are kept for the next try."""
        row = DocumentAccess(document_id=document_id, version=version, user_id=user_id,
                             kind=kind, page=page)
        async with self._writing:
            rows, self._pending = [*self._pending, row], []
            try:
                async with self.db.session() as s:
                    s.add_all(rows)
            except Exception:
                log.exception("could not write a confidential read to the access log")
                self._pending[:0] = rows[:-1]
                raise

    async def flush(self) -> None:
        async with self._writing:
            rows, self._pending = self._pending, []
            if not rows:
                return
            try:
                async with self.db.session() as s:
                    s.add_all(rows)
            except Exception:
                log.exception("could not write %d document access rows", len(rows))

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self.flush()


class LoopLagMonitor:
    """Samples how late the event loop wakes a 50 ms timer."""

    def __init__(self, histogram: Histogram | None, period_s: float = 0.05) -> None:
        self.histogram, self.period_s = histogram, period_s
        self.samples: deque[float] = deque(maxlen=20_000)

    async def run(self) -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(self.period_s)
            lag = max(0.0, time.perf_counter() - started - self.period_s)
            self.samples.append(lag)
            if self.histogram is not None:
                self.histogram.observe(lag)

    def summary(self) -> dict[str, Any]:
        data = sorted(self.samples)
        if not data:
            return {"count": 0, "p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0}
        cuts = quantiles(data, n=100, method="inclusive") if len(data) > 1 else [data[0]] * 99
        return {"count": len(data), "p50_ms": round(cuts[49] * 1000, 2),
                "p99_ms": round(cuts[98] * 1000, 2), "max_ms": round(data[-1] * 1000, 2)}


@dataclass
class DocumentRuntime:
    db: Database
    sio: socketio.AsyncServer
    pool: WorkerPool
    store: BlobStore
    limits: Limits
    annotations: AnnotationHub
    presenters: PresenterBoard
    access: AccessLog
    lag: LoopLagMonitor
    # Confidential page images as rendered for one viewer (server.documents.routes), LRU by
    # bytes, and how long one is served again (Settings.confidential_cache_mb and
    # watermark_bucket_s).
    page_images: ByteLRU
    watermark_bucket_s: int
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    bus: Bus | None = None  # what the feature publishes (server/documents/events.py)
    _indexes: OrderedDict[int, PageTextIndex] = field(default_factory=OrderedDict)

    def watermark_bucket(self) -> int:
        """The current time bucket of confidential page images (see page_images)."""
        return int(time.time()) // max(1, self.watermark_bucket_s)

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.access.flush()
        try:
            await self.presenters.close()
        except Exception:
            log.exception("could not store the last presenter positions")
        await self.pool.close()

    async def text_index(self, version_id: int, page_count: int) -> PageTextIndex:
        """Folded page texts of one (immutable) version, built off the loop and cached."""
        index = self._indexes.get(version_id)
        if index is None:
            async with self.db.session() as s:
                texts = await catalog.page_texts(s, version_id, page_count)
            index = await asyncio.to_thread(PageTextIndex, texts)
            self._indexes[version_id] = index
            while len(self._indexes) > 64:
                self._indexes.popitem(last=False)
        self._indexes.move_to_end(version_id)
        return index

    def forget_text_index(self, version_id: int) -> None:
        """A version whose text arrived after it became current (a mirrored one, page 1
        first): the index a search built before then was empty."""
        self._indexes.pop(version_id, None)

    async def emit_audience(self, doc: Document, event: str, data: Any) -> None:
        """To the meeting if the document is published, else to its managers only."""
        if doc.published:
            await self.sio.emit(event, data, room=meeting_room(doc.meeting_id))
            return
        async with self.db.session() as s:
            managers = await catalog.manager_user_ids(s, doc.meeting_id)
        for user_id in managers:
            await self.sio.emit(event, data, room=user_room(user_id))

    async def emit_document(self, doc: Document) -> None:
        async with self.db.session() as s:
            assert doc.id is not None
            versions = (await catalog.versions_of(s, [doc.id]))[doc.id]
        await self.emit_audience(doc, "document:updated", catalog.document_dict(doc, versions))


def create_runtime(app: web.Application) -> DocumentRuntime:
    settings, db, sio = app[keys.SETTINGS], app[keys.DB], app[keys.SIO]
    lag = Histogram("hopso_event_loop_lag_seconds", "How late the event loop runs a 50 ms timer",
                    buckets=(0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
                    registry=app[keys.REGISTRY])
    return DocumentRuntime(
        db=db, sio=sio, pool=WorkerPool(size=settings.document_workers),
        store=BlobStore(settings.data_dir / "documents"),
        limits=Limits(max_bytes=settings.max_upload_bytes,
                      office_without_sandbox=settings.office_without_sandbox),
        annotations=AnnotationHub(db, sio), presenters=PresenterBoard(db),
        access=AccessLog(db), lag=LoopLagMonitor(lag),
        page_images=ByteLRU(int(settings.confidential_cache_mb * (1 << 20))),
        watermark_bucket_s=settings.watermark_bucket_s, bus=app[keys.BUS])


async def documents_context(app: web.Application) -> AsyncIterator[None]:
    from server.documents.processing import resume_unfinished

    runtime = app[DOCUMENTS]
    runtime.spawn(runtime.access.run())
    runtime.spawn(runtime.lag.run())
    await resume_unfinished(runtime)
    yield
    await runtime.close()
