"""Runs documents.processing for each uploaded version in the worker pool, pushes progress
to the uploader and the meeting's managers, and persists the outcome.

Status is persisted (stage changes at once, page counts about once a second), so a page
reload shows it; versions left unfinished by a shutdown are processed again at start-up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from documents import catalog
from documents.db_models import Document, DocumentVersion, PageText, VersionStatus
from documents.errors import DocumentRejected, DocumentWarning, RejectCode
from documents.processing import ProcessedDocument, ProgressEvent, Stage, process_document
from documents.worker_pool import PoolClosed
from rooms.errors import NotFound
from rooms.models import utcnow
from server.core.realtime import user_room
from server.documents.events import DocumentChanged
from server.documents.runtime import DocumentRuntime

log = logging.getLogger(__name__)
PERSIST_EVERY_S = 1.0
_FINAL = (Stage.READY, Stage.READY_WITH_WARNINGS, Stage.REJECTED)


def clean(text: str) -> str:
    """PostgreSQL text cannot hold NUL, which PDF text extraction sometimes yields."""
    return text.replace("\x00", "")


def warning_dict(w: DocumentWarning) -> dict[str, Any]:
    return {"code": str(w.code), "page": w.page_index, "message_en": clean(w.message_en),
            "message_vi": clean(w.message_vi)}


def start(rt: DocumentRuntime, document_id: int, version_id: int) -> None:
    rt.spawn(_Run(rt, document_id, version_id).execute())


async def resume_unfinished(rt: DocumentRuntime) -> None:
    unfinished = [s.value for s in VersionStatus if not s.finished]
    async with rt.db.session() as s:
        rows = await s.exec(select(DocumentVersion).where(
            col(DocumentVersion.status).in_(unfinished)))
        found = [(v.document_id, v.id) for v in rows.all()]
    for document_id, version_id in found:
        log.info("resuming processing of document %s version row %s", document_id, version_id)
        start(rt, document_id, version_id)  # type: ignore[arg-type]


@dataclass
class _Run:
    rt: DocumentRuntime
    document_id: int
    version_id: int
    meeting_id: int = 0
    number: int = 0
    recipients: set[int] = field(default_factory=set)
    stage: str = ""
    persisted_at: float = 0.0

    async def execute(self) -> None:
        async with self.rt.db.session() as s:
            version = await s.get(DocumentVersion, self.version_id)
            doc = await s.get(Document, self.document_id)
            if version is None or doc is None:
                return
            self.meeting_id, self.number = doc.meeting_id, version.number
            self.recipients = await catalog.manager_user_ids(s, doc.meeting_id)
            self.recipients.add(version.created_by)
            digest = version.sha256
        store = self.rt.store
        try:
            result = await process_document(self.rt.pool, store.path_for(digest),
                                             store.derived_dir(digest), self.rt.limits,
                                             self.on_progress)
        except DocumentRejected as exc:
            await self._rejected(exc)
            return
        except PoolClosed:
            return  # shutting down: processed again at the next start
        except Exception as exc:
            log.exception("processing document %s failed", self.document_id)
            await self._rejected(DocumentRejected(RejectCode.INTERNAL, repr(exc)))
            return
        try:
            await self._ready(result)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("storing the processed document %s failed", self.document_id)
            await self._rejected(DocumentRejected(RejectCode.INTERNAL, repr(exc)))

    # --- progress ------------------------------------------------------------------------

    async def on_progress(self, event: ProgressEvent) -> None:
        if event.stage in _FINAL:
            return  # reported by _ready or _rejected, once the outcome is stored
        await self._persist_progress(event)
        await self._push(event.stage.value, done=event.done, total=event.total,
                         page=event.page_index, warnings=[warning_dict(w) for w in event.warnings])

    async def _persist_progress(self, event: ProgressEvent) -> None:
        now = time.monotonic()
        changed = event.stage.value != self.stage
        if not changed and now - self.persisted_at < PERSIST_EVERY_S and event.done != 1:
            return
        self.stage, self.persisted_at = event.stage.value, now
        async with self.rt.db.session() as s:
            version = await s.get(DocumentVersion, self.version_id)
            if version is None:
                return
            version.status = VersionStatus(event.stage.value)
            version.pages_done = event.done
            if event.total:
                version.page_count = event.total
            if event.stage is Stage.CONVERTING:
                version.converted = True
            s.add(version)

    async def _push(self, stage: str, *, done: int = 0, total: int = 0, page: int | None = None,
                    rejection: dict[str, str] | None = None,
                    warnings: list[dict[str, Any]] | None = None) -> None:
        data = {"document_id": self.document_id, "meeting_id": self.meeting_id,
                "version": self.number, "stage": stage, "done": done, "total": total,
                "page": page, "rejection": rejection, "warnings": warnings or []}
        for user_id in self.recipients:
            await self.rt.sio.emit("document:progress", data, room=user_room(user_id))

    # --- outcomes ------------------------------------------------------------------------

    async def _rejected(self, exc: DocumentRejected) -> None:
        rejection = {"code": str(exc.code), "message_en": exc.message_en,
                     "message_vi": exc.message_vi}
        log.info("document %s version %s rejected: %s", self.document_id, self.number, exc)
        async with self.rt.db.session() as s:
            version = await s.get(DocumentVersion, self.version_id)
            doc = await s.get(Document, self.document_id)
            assert version is not None and doc is not None
            version.status = VersionStatus.rejected
            version.reject_code = str(exc.code)
            version.reject_en, version.reject_vi = exc.message_en[:500], exc.message_vi[:500]
            version.processed_at = utcnow()
            s.add(version)
            if doc.version == version.number:
                doc.status = catalog.status_of(version)
                doc.updated_at = utcnow()
                s.add(doc)
        await self._push("rejected", rejection=rejection)
        await self.rt.emit_document(doc)

    async def _ready(self, result: ProcessedDocument) -> None:
        sizes = [(float(p.width), float(p.height)) for p in result.page_sizes]
        switched_from: int | None = None

        async def store(s: AsyncSession) -> None:
            version = await s.get(DocumentVersion, self.version_id)
            doc = await s.get(Document, self.document_id)
            assert version is not None and doc is not None
            _fill_version(version, result, sizes)
            s.add(version)
            s.add_all(PageText(version_id=self.version_id, page=i, text=clean(t))
                      for i, t in enumerate(result.page_texts))
            if version.number >= doc.version:
                doc.version = version.number
                doc.status = catalog.status_of(version)
                doc.updated_at = utcnow()
                s.add(doc)

        async with self.rt.db.session() as s:
            doc = await s.get(Document, self.document_id)
            assert doc is not None
            previous = doc.version
        if self.number > previous:
            switched_from = previous
            old_texts = await self._texts_of(previous)
            await self.rt.annotations.switch_version(
                self.document_id, previous, self.number, (old_texts, result.page_texts), sizes,
                store)
        else:
            async with self.rt.db.session() as s:
                await store(s)
        async with self.rt.db.session() as s:
            doc = await s.get(Document, self.document_id)
        assert doc is not None
        await self._push(result.status.value, done=result.page_count, total=result.page_count,
                         warnings=[warning_dict(w) for w in result.warnings])
        await self.rt.emit_document(doc)
        if self.rt.bus is not None and doc.version == self.number:
            await self.rt.bus.publish(DocumentChanged(doc.meeting_id, self.document_id,
                                                      doc.published, doc.published))
        if switched_from is not None:
            await self.rt.emit_audience(doc, "document:version", {
                "document_id": doc.id, "meeting_id": doc.meeting_id, "version": self.number,
                "previous_version": switched_from})

    async def _texts_of(self, number: int) -> list[str]:
        async with self.rt.db.session() as s:
            try:
                old = await catalog.version(s, self.document_id, number)
            except NotFound:
                return []
            if not old.status.usable or not old.page_count:
                return []
            return await catalog.page_texts(s, old.id, old.page_count)  # type: ignore[arg-type]


def _fill_version(version: DocumentVersion, result: ProcessedDocument,
                  sizes: list[tuple[float, float]]) -> None:
    version.status = VersionStatus(result.status.value)
    version.page_count = result.page_count
    version.pages_done = result.page_count
    version.page_sizes = [[w, h] for w, h in sizes]
    version.outline = [{"level": o.level, "title": clean(o.title), "page": o.page_index}
                       for o in result.outline]
    version.warnings = [warning_dict(w) for w in result.warnings]
    version.has_safe_copy = result.sanitized_pdf is not None
    version.converted = result.converted_from is not None
    version.processed_at = utcnow()
