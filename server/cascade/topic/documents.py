"""Documents down the tree (issue 13, item 1): the topic ``documents.changed``.

At the owner node, every change of a published document of a cascaded meeting (published,
withdrawn, edited, a new version current) journals the document as it now is: its metadata,
the page sizes and outline, and two content-addressed files, the distributed PDF (the
sanitised copy: what tablets get anyway, already converted from Office formats) and, for a
document that is not confidential, its page 1 as the owner rendered it (the first page is
viewable at a ward long before the whole file has crossed a slow link). Every node applies
the entry on its mirror of the meeting (server/cascade/topic/documents_mirror.py) and fetches
the files from its parent (server/cascade/blobs.py), each file crossing each link once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any
from weakref import WeakValueDictionary

from aiohttp import web
from pydantic import Field
from sqlalchemy import and_
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from documents.db_models import Document, DocumentVersion
from documents.mirror_models import DocumentCascade
from documents.page_variants import PREVIEW_SHARE, link_preview
from rooms import meeting_nodes
from rooms.models import Meeting
from server.cascade.blobs import FETCHER, BlobFetcher
from server.cascade.blobs import routes as blob_routes
from server.cascade.schemas import NodeSchema
from server.cascade.state import MeetingState
from server.cascade.topic.documents_mirror import Mirror
from server.cascade.topics import MAX_DATA_BYTES, Topic, encode
from server.core import keys
from server.documents.events import DocumentChanged
from server.documents.keys import DOCUMENTS
from server.documents.runtime import DocumentRuntime

log = logging.getLogger(__name__)

TOPIC = "documents.changed"
_DIGEST = r"^[0-9a-f]{64}$"
CHUNK_BYTES = 1 << 20
PREVIEW_TIMEOUT_S = 30.0


# [width, height] in points, as the owner's processing measured them.
PageSize = Annotated[list[Annotated[float, Field(gt=0, le=100_000)]],
                     Field(min_length=2, max_length=2)]


class FileRef(NodeSchema):
    sha256: str = Field(pattern=_DIGEST)
    size: int = Field(ge=1, le=1 << 40)


class DocumentData(NodeSchema):
    """A published (or withdrawn) document of the meeting, as the owner has it now."""

    document: int = Field(ge=1, le=2**31 - 1)  # the owner's document id
    title: str = Field(min_length=1, max_length=300)
    filename: str = Field(min_length=1, max_length=200)
    confidential: bool
    published: bool
    version: int = Field(ge=1, le=100_000)  # the owner's current version number
    file: FileRef  # the distributed PDF
    first_page: FileRef | None = None  # page 1 as a JPEG (not for confidential documents)
    page_count: int = Field(ge=1, le=100_000)
    page_sizes: list[PageSize] = Field(default_factory=list, max_length=100_000)
    outline: list[dict[str, Any]] = Field(default_factory=list, max_length=5000)
    warnings: list[dict[str, Any]] = Field(default_factory=list, max_length=5000)


# -- the owner's side ------------------------------------------------------------------------------


def _chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            yield chunk


def _distributed(rt: DocumentRuntime, v: DocumentVersion) -> Path:
    """The file tablets get: the sanitised copy, else the converted or uploaded PDF."""
    derived = rt.store.derived_dir(v.sha256)
    if v.has_safe_copy and (derived / "document.pdf").is_file():
        return derived / "document.pdf"
    if v.converted:
        return derived / "converted.pdf"
    return rt.store.path_for(v.sha256)


async def _as_blob(rt: DocumentRuntime, path: Path) -> tuple[str, int]:
    """`path` in the blob store (content addressed: the same bytes are stored once)."""
    stored = await asyncio.to_thread(rt.store.put_stream, _chunks(path))
    return stored.digest, stored.size


async def export(rt: DocumentRuntime, doc: Document, v: DocumentVersion,
                 row: DocumentCascade | None) -> DocumentCascade:
    """The row naming the files of `v` that cross links (made once per uploaded file: the
    same upload in another meeting sends the same files, which the nodes already have)."""
    assert doc.id is not None
    if row is None or row.version != v.number or not rt.store.exists(row.sha256):
        row = await _sent_before(rt, v) or row
    if row is not None and row.version == v.number and rt.store.exists(row.sha256):
        return DocumentCascade(document_id=doc.id, meeting_id=doc.meeting_id, origin_id=None,
                               version=v.number, sha256=row.sha256, size=row.size,
                               page1_sha256=None if doc.confidential else row.page1_sha256,
                               page1_size=None if doc.confidential else row.page1_size)
    source = _distributed(rt, v)
    if source == rt.store.path_for(v.sha256):
        sha, size = v.sha256, v.size
    else:
        sha, size = await _as_blob(rt, source)
    # Not for a confidential document: its pages are only ever seen watermarked.
    first = None if doc.confidential else await _preview(rt, v, size)
    return DocumentCascade(document_id=doc.id, meeting_id=doc.meeting_id, origin_id=None,
                           version=v.number, sha256=sha, size=size,
                           page1_sha256=first[0] if first else None,
                           page1_size=first[1] if first else None)


async def _preview(rt: DocumentRuntime, v: DocumentVersion, size: int) -> tuple[str, int] | None:
    """Page 1 as it crosses links: the rendered page within PREVIEW_SHARE of the file's size
    (documents/page_variants.py), or none."""
    page1 = rt.store.derived_dir(v.sha256) / "pages" / "0000.jpg"
    if not page1.is_file():
        return None
    preview = page1.with_name("link-0000.jpg")
    budget = int(size * PREVIEW_SHARE)
    try:
        made = await rt.pool.run(link_preview, str(page1), str(preview), budget,
                                 timeout=PREVIEW_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - pool closed, a crash: page 1 waits for the PDF
        log.warning("cascade: page 1 of version %s not sent ahead: %r", v.id, exc)
        return None
    return await _as_blob(rt, preview) if made else None


async def _sent_before(rt: DocumentRuntime, v: DocumentVersion) -> DocumentCascade | None:
    """What was sent for the same uploaded bytes (in any meeting of this node), as if for
    `v`'s number: processing makes a new sanitised copy each time (other bytes)."""
    async with rt.db.session() as s:
        found = (await s.exec(
            select(DocumentCascade).join(DocumentVersion, and_(
                col(DocumentVersion.document_id) == DocumentCascade.document_id,
                col(DocumentVersion.number) == DocumentCascade.version))
            .where(DocumentVersion.sha256 == v.sha256,
                   col(DocumentCascade.origin_id).is_(None)))).first()
    if found is None:
        return None
    return DocumentCascade(document_id=found.document_id, meeting_id=found.meeting_id,
                           version=v.number, sha256=found.sha256, size=found.size,
                           page1_sha256=found.page1_sha256, page1_size=found.page1_size)


def entry_data(doc: Document, v: DocumentVersion, row: DocumentCascade) -> dict[str, Any]:
    data: dict[str, Any] = {
        "document": doc.id, "title": doc.title, "filename": doc.filename or "tai-lieu.pdf",
        "confidential": doc.confidential, "published": doc.published, "version": v.number,
        "file": {"sha256": row.sha256, "size": row.size},
        "first_page": None if doc.confidential or row.page1_sha256 is None or not row.page1_size
        else {"sha256": row.page1_sha256, "size": row.page1_size},
        "page_count": v.page_count or 1,
        "page_sizes": [[round(float(w), 2), round(float(h), 2)] for w, h in v.page_sizes or []],
        "outline": v.outline or [], "warnings": v.warnings or []}
    # The entry stays under the journal's limit: the outline and warnings go first (the
    # node's own processing finds them again), then the page sizes (page 1 then waits for
    # the whole file).
    for name in ("warnings", "outline", "page_sizes"):
        if len(encode(data)) <= MAX_DATA_BYTES - 2000:
            break
        data[name], data["first_page"] = [], data["first_page"] if name != "page_sizes" else None
    return data


_LOCKS: WeakValueDictionary[int, asyncio.Lock] = WeakValueDictionary()


async def journal_document(app: web.Application, state: MeetingState,
                           event: DocumentChanged) -> None:
    """A change of a document at its meeting's owner: journal it if mirrors may see it.
    The files that cross are prepared as soon as a version is ready, draft or not, so a
    publication later journals at once. One change of a document at a time (a publication
    and its version becoming ready may come together)."""
    lock = _LOCKS.setdefault(event.document_id, asyncio.Lock())
    async with lock:
        await _journal_document(app, state, event)


async def _save(db: Any, row: DocumentCascade) -> None:
    try:
        async with db.session() as s:
            await s.merge(row)
    except IntegrityError:  # written by another process meanwhile: update it
        async with db.session() as s:
            await s.merge(row)


async def _journal_document(app: web.Application, state: MeetingState,
                            event: DocumentChanged) -> None:
    rt, db = app[DOCUMENTS], app[keys.DB]
    async with db.session() as s:
        meeting = await s.get(Meeting, event.meeting_id)
        doc = await s.get(Document, event.document_id)
        if meeting is None or meeting.cascade_key is not None or doc is None:
            return  # a mirror's own documents stay on that node
        if not await meeting_nodes.node_seats(s, event.meeting_id):
            return  # the meeting invites no node
        row = await s.get(DocumentCascade, event.document_id)
        v = (await s.exec(select(DocumentVersion).where(
            DocumentVersion.document_id == doc.id,
            DocumentVersion.number == doc.version))).first()
    if v is None or not v.status.usable or not v.page_count:
        return  # journaled when the version is ready (processing publishes the change again)
    sent_before = row is not None
    row = await export(rt, doc, v, row)
    await _save(db, row)
    if not (event.published or event.was_published):
        return  # a draft: nothing leaves the owner
    if not sent_before and not doc.published:
        return  # withdrawn before any node had it
    await state.publish(event.meeting_id, TOPIC, entry_data(doc, v, row))


# -- wiring -------------------------------------------------------------------------------------------


def install(app: web.Application, state: MeetingState) -> None:
    settings = app[keys.SETTINGS]
    node = settings.node
    assert node is not None
    rt = app[DOCUMENTS]
    app.add_routes(blob_routes)
    if node.parent_url:
        app[FETCHER] = BlobFetcher(rt.store, node, rt.limits.max_bytes,
                                   registry=app[keys.REGISTRY])
    mirror = Mirror(app, state)
    state.register(Topic(TOPIC, DocumentData, "down", apply=mirror.apply))

    async def changed(event: DocumentChanged) -> None:
        await journal_document(app, state, event)
    app[keys.BUS].subscribe(DocumentChanged, changed)

    async def lifespan(_app: web.Application) -> Any:
        mirror.resume()
        yield
        await mirror.close()
        fetcher = app.get(FETCHER)
        if fetcher is not None:
            await fetcher.close()
    app.cleanup_ctx.append(lifespan)
