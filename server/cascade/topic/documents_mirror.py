"""A node's mirror of the owner's documents (the applier of ``documents.changed``).

Applying an entry is quick (the journal waits on it): the local Document and its
`DocumentCascade` row (what the owner sent last) are written, tablets are told, and a
background task per document brings the local rows to what the row says:

1. a new document that is not confidential: page 1 as the owner rendered it is fetched
   first (a few hundred kB) and the version is made current at once from the owner's page
   sizes, so tablets open it and see page 1 while the PDF is still crossing the link;
2. the PDF (the owner's distributed copy), fetched once from the parent for every tablet
   and child below (server/cascade/blobs.py);
3. then the node's own processing, as for an upload here: page images, search text and
   the sanitised copy; confidential pages are watermarked per viewer by this node when its
   tablets ask. A later version goes through the normal path (server/documents/processing.py):
   it becomes current once processed here, carrying this node's annotations over.

Everything is idempotent: a re-applied entry, or the resume at start-up, finds what is done.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiohttp import web
from sqlmodel import col, select

from documents import raster
from documents.db_models import (
    Document,
    DocumentStatus,
    DocumentVersion,
    PageText,
    VersionStatus,
)
from documents.errors import DocumentRejected
from documents.mirror_models import DocumentCascade
from documents.processing import process_document
from documents.worker_pool import PRIORITY_LOW, PoolClosed
from rooms.models import Meeting, MeetingStatus, utcnow
from server.cascade.blobs import FETCHER, BlobRefused, BlobUnavailable
from server.cascade.schemas import validate
from server.cascade.state import MeetingState
from server.cascade.topic.documents_people import Person, local_user
from server.cascade.topic.presenter import CopyChanged
from server.cascade.topics import Entry
from server.core import keys
from server.core.realtime import meeting_room
from server.documents import processing as doc_processing
from server.documents.annotation_push import doc_room
from server.documents.keys import DOCUMENTS

log = logging.getLogger(__name__)

class Mirror:
    def __init__(self, app: web.Application, state: MeetingState) -> None:
        self.app, self.state = app, state
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._again: set[int] = set()
        self._meta: dict[int, Any] = {}  # document id -> the last entry's DocumentData
        # document id -> when its current version's entry was applied here (the steps after
        # it are logged with their delay: where a document's time at a node goes)
        self._since: dict[int, float] = {}

    # -- the applier -------------------------------------------------------------------------
    async def apply(self, meeting_id: int, entry: Entry) -> None:
        from server.cascade.topic.documents import DocumentData

        d = validate(DocumentData, entry.data)
        owner = entry.key.rpartition("/")[0]
        rt = self.app[DOCUMENTS]
        async with self.app[keys.DB].session() as s:
            row = (await s.exec(select(DocumentCascade).where(
                DocumentCascade.meeting_id == meeting_id,
                DocumentCascade.origin_id == d.document))).first()
            if row is None and not d.published:
                return  # withdrawn before it ever reached this node
            was_published = False
            if row is None:
                creator = await local_user(s, Person(origin=owner, user=0, name=owner))
                doc = Document(meeting_id=meeting_id, title=d.title, filename=d.filename,
                               confidential=d.confidential, published=d.published,
                               status=DocumentStatus.processing, version=d.version,
                               created_by=creator)
                s.add(doc)
                await s.flush()
                assert doc.id is not None
                row = DocumentCascade(document_id=doc.id, meeting_id=meeting_id,
                                      origin_id=d.document, version=d.version,
                                      sha256=d.file.sha256, size=d.file.size)
            else:
                found = await s.get(Document, row.document_id)
                assert found is not None
                doc, was_published = found, found.published
                doc.title, doc.filename = d.title, d.filename
                doc.confidential, doc.published = d.confidential, d.published
                doc.updated_at = utcnow()
                s.add(doc)
                if d.version < row.version:
                    log.info("cascade: %s: document %d: version %d is older than %d here",
                             entry.key, d.document, d.version, row.version)
            if d.version >= row.version:
                row.version, row.sha256, row.size = d.version, d.file.sha256, d.file.size
                row.page1_sha256 = d.first_page.sha256 if d.first_page else None
                row.page1_size = d.first_page.size if d.first_page else None
            s.add(row)
        assert doc.id is not None
        previous = self._meta.get(doc.id)
        if previous is None or previous.version != d.version:
            self._since[doc.id] = time.monotonic()
        self._meta[doc.id] = d
        await self.app[keys.BUS].publish(CopyChanged(meeting_id, doc.id, d.document))
        if was_published and not doc.published:
            await rt.sio.emit("document:withdrawn", {"document_id": doc.id,
                                                     "meeting_id": meeting_id},
                              room=meeting_room(meeting_id))
            await rt.sio.close_room(doc_room(doc.id, presenters=False))
        else:
            await rt.emit_document(doc)
        self.ensure(doc.id)

    # -- bringing the local rows to what the owner sent -------------------------------------------
    def ensure(self, document_id: int) -> None:
        """Run (or re-run, once the running pass ends) the document's background pass."""
        task = self._tasks.get(document_id)
        if task is not None and not task.done():
            self._again.add(document_id)
            return
        task = self._tasks[document_id] = asyncio.ensure_future(self._bring(document_id))
        task.add_done_callback(lambda _t: self._done(document_id))

    def _done(self, document_id: int) -> None:
        self._tasks.pop(document_id, None)
        if document_id in self._again:
            self._again.discard(document_id)
            self.ensure(document_id)

    def resume(self) -> None:
        """At start-up: every mirrored document of a live meeting gets its pass."""
        async def scan() -> None:
            async with self.app[keys.DB].session() as s:
                rows = (await s.exec(select(DocumentCascade.document_id)
                                     .join(Meeting, col(Meeting.id) == DocumentCascade.meeting_id)
                                     .where(col(DocumentCascade.origin_id).is_not(None),
                                            col(Meeting.status) != MeetingStatus.closed))).all()
            for document_id in rows:
                self.ensure(document_id)
        task = asyncio.ensure_future(scan())
        self._tasks[0] = task
        task.add_done_callback(lambda _t: self._tasks.pop(0, None))

    async def close(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    def _step(self, document_id: int, what: str) -> None:
        """Logs a step of a mirrored document with its delay since the entry came."""
        since = self._since.get(document_id)
        log.info("cascade: mirrored document %d: %s, %.2f s after its entry", document_id,
                 what, time.monotonic() - since if since is not None else -1.0)

    async def _bring(self, document_id: int) -> None:
        try:
            await self._pass(document_id)
        except (BlobRefused, BlobUnavailable) as exc:
            log.warning("cascade: mirrored document %d: file not fetched: %s", document_id, exc)
        except (PoolClosed, asyncio.CancelledError):
            raise
        except Exception:
            log.exception("cascade: mirrored document %d: bringing it here failed", document_id)

    async def _pass(self, document_id: int) -> None:
        rt, fetcher = self.app[DOCUMENTS], self.app.get(FETCHER)
        async with self.app[keys.DB].session() as s:
            row = await s.get(DocumentCascade, document_id)
            doc = await s.get(Document, document_id)
            if row is None or doc is None or fetcher is None:
                return
            versions = {v.number: v for v in (await s.exec(select(DocumentVersion).where(
                DocumentVersion.document_id == document_id))).all()}
        v = versions.get(row.version)
        if v is not None and v.processed_at is not None:
            return  # processed here (or rejected here)
        if v is not None and v.status.value in ("validating", "converting", "rendering"):
            return  # the normal processing has it
        if not doc.published:
            return  # fetched when published again
        if v is None and not versions and row.page1_sha256 and row.page1_size:
            v = await self._first_page(doc, row)
        path = await fetcher.fetch(row.sha256, row.size)
        self._step(document_id, f"PDF here ({row.size} bytes)")
        if v is None:
            v = await self._new_version(doc, row)
            doc_processing.start(rt, document_id, v.id)  # type: ignore[arg-type]
            return
        await self._process_in_place(doc, v, str(path))

    async def _first_page(self, doc: Document, row: DocumentCascade) -> DocumentVersion | None:
        """Page 1 first: the version becomes current with the owner's page sizes and page 1,
        before its PDF has arrived."""
        d = self._meta.get(doc.id)  # type: ignore[arg-type]
        if d is None or len(d.page_sizes) != d.page_count or d.version != row.version:
            return None  # after a restart: the whole file first
        rt, fetcher = self.app[DOCUMENTS], self.app[FETCHER]
        assert row.page1_sha256 is not None and row.page1_size is not None
        self._step(doc.id, "page 1 asked from the parent")  # type: ignore[arg-type]
        try:
            jpeg = await fetcher.fetch(row.page1_sha256, row.page1_size)
        except (BlobRefused, BlobUnavailable) as exc:
            log.warning("cascade: document %s: page 1 not fetched: %s", doc.id, exc)
            return None
        derived = rt.store.derived_dir(row.sha256)
        data = await asyncio.to_thread(jpeg.read_bytes)
        if not data.startswith(b"\xff\xd8"):
            log.warning("cascade: document %s: page 1 from the parent is not a JPEG", doc.id)
            return None
        await asyncio.to_thread(raster.write_atomic, derived / "pages" / "0000.jpg", data)
        async with self.app[keys.DB].session() as s:
            v = DocumentVersion(document_id=doc.id, number=row.version, sha256=row.sha256,  # type: ignore[arg-type]
                                size=row.size, status=VersionStatus.ready, pages_done=1,
                                page_count=d.page_count, page_sizes=d.page_sizes,
                                outline=d.outline, warnings=d.warnings,
                                created_by=doc.created_by)
            s.add(v)
            found = await s.get(Document, doc.id)
            assert found is not None
            found.status, found.version = DocumentStatus.ready, row.version
            s.add(found)
        assert found.id is not None and row.origin_id is not None  # (a copy: it has one)
        await self.app[keys.BUS].publish(CopyChanged(found.meeting_id, found.id, row.origin_id))
        await rt.emit_document(found)
        self._step(doc.id, f"page 1 current ({row.page1_size} bytes)")  # type: ignore[arg-type]
        # No worker job here: a tablet asking another width, or the thumbnail, gets this
        # image until the PDF is here (server/documents/routes.py, _ahead_of_its_pdf). A
        # resize to every width at every node at once (2 workers spawned at each, ~1.5 s
        # of CPU) held the tablets' page 1 back by 10 s in the 15-ward bench.
        return v

    async def _new_version(self, doc: Document, row: DocumentCascade) -> DocumentVersion:
        async with self.app[keys.DB].session() as s:
            v = DocumentVersion(document_id=doc.id, number=row.version, sha256=row.sha256,  # type: ignore[arg-type]
                                size=row.size, status=VersionStatus.validating,
                                created_by=doc.created_by)
            s.add(v)
            await s.flush()
        return v

    async def _process_in_place(self, doc: Document, v: DocumentVersion, path: str) -> None:
        """The version already current (page 1 first): its pages, text and PDF, made here;
        the version stays current throughout."""
        rt = self.app[DOCUMENTS]
        derived = rt.store.derived_dir(v.sha256)
        try:
            # Its page 1 is shown already: the rest is bulk work, one job at a time behind
            # whatever a tablet asks for (documents/processing.py).
            result = await process_document(rt.pool, path, derived, rt.limits,
                                            jobs_in_flight=1, pages_priority=PRIORITY_LOW)
        except DocumentRejected as exc:
            log.warning("cascade: mirrored document %s version %d refused here: %s", doc.id,
                        v.number, exc)
            async with self.app[keys.DB].session() as s:
                found = await s.get(DocumentVersion, v.id)
                if found is not None:
                    found.status, found.processed_at = VersionStatus.rejected, utcnow()
                    found.reject_code = str(exc.code)
                    found.reject_en, found.reject_vi = exc.message_en[:500], exc.message_vi[:500]
                    s.add(found)
            return
        async with self.app[keys.DB].session() as s:
            found = await s.get(DocumentVersion, v.id)
            current = await s.get(Document, doc.id)
            if found is None or current is None or found.processed_at is not None:
                return
            found.status = VersionStatus(result.status.value)
            found.page_count = found.pages_done = result.page_count
            found.page_sizes = [[float(p.width), float(p.height)] for p in result.page_sizes]
            found.outline = [{"level": o.level, "title": doc_processing.clean(o.title),
                              "page": o.page_index} for o in result.outline]
            found.warnings = [doc_processing.warning_dict(w) for w in result.warnings]
            found.has_safe_copy = result.sanitized_pdf is not None
            found.processed_at = utcnow()
            s.add(found)
            s.add_all(PageText(version_id=found.id, page=i, text=doc_processing.clean(t))  # type: ignore[arg-type]
                      for i, t in enumerate(result.page_texts))
            current.status = DocumentStatus(result.status.value)
            s.add(current)
        # The version was current (page 1 first) before its text was here: a search in
        # between built and cached an empty index of it, which the runtime keeps as a
        # version's text never changes elsewhere. Dropped, so the next search reads the text
        # (again after the emit's read, a thread hop: a search that read the rows before
        # the commit and built its index meanwhile).
        rt.forget_text_index(v.id or 0)
        await rt.emit_document(current)
        rt.forget_text_index(v.id or 0)
        self._step(doc.id, "processed here")  # type: ignore[arg-type]
