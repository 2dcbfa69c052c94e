"""Document REST routes: list, details, edit, publish, the PDF, page images, search, the
annotated export and the access log. Every route checks access (a document the caller may
not see is 404) and every fetch is logged."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from documents import catalog, export_job, raster, render
from documents.db_models import Document, DocumentAccess, DocumentVersion
from documents.listing import listed, listing_dict
from documents.storage import content_disposition
from rooms import agenda
from rooms.errors import Conflict, DomainError, Forbidden, Invalid, NotFound
from rooms.models import Role, Unit, User, utcnow
from rooms.permissions import Action
from server.core import keys
from server.core.auth import (
    current_user,
    meeting_access,
    path_id,
    reads_own_session,
    session_params,
    signed_in,
    signed_in_meeting_access,
)
from server.core.http_util import Body, int_id, parse_int, query_int, read_body
from server.core.realtime import meeting_room
from server.documents.annotation_push import doc_room
from server.documents.annotations import Viewer
from server.documents.events import DocumentChanged
from server.documents.keys import DOCUMENTS
from server.documents.runtime import DocumentRuntime

routes = web.RouteTableDef()
MAX_HITS = 100
EXPORT_TIMEOUT_S = 180.0


class PageUnavailable(DomainError):
    code, status = "page_unavailable", 503


class ReadNotLogged(DomainError):
    code, status = "not_logged", 503


class DocumentEdit(Body):
    title: str | None = None
    agenda_item_id: int | None = None
    confidential: bool | None = None
    version: int | None = None  # the version the caller's page shows (a stale tab is refused)


class Publish(Body):
    published: bool
    version: int | None = None


# Marks every answer that carries a confidential document's content: the service worker
# (web_client/static/sw.js) never keeps such an answer, and drops its copies of the document.
CONFIDENTIAL_HEADER = "Hopso-Confidential"
# Content a browser may keep but must ask the server about before each use: a document can
# become confidential (or be withdrawn) under the same URL, and every read is logged.
REVALIDATE = "private, no-cache"


def _query(request: web.Request) -> str:
    q = request.query.get("q", "").strip()
    if not 1 <= len(q) <= 200:
        raise Invalid("q: give 1 to 200 characters to search for")
    return q


def _version_number(request: web.Request, current: int) -> int:
    """The version the query names (`?version=`), else the current one."""
    raw_version = request.query.get("version")
    if raw_version is None:
        return current
    try:
        return parse_int(raw_version, "version")
    except Invalid:
        raise NotFound(f"version {raw_version[:24]!r} not found") from None


def _asked_version(request: web.Request) -> tuple[int | None, DomainError | None]:
    """`?version=` (None: the current one), its refusal held back until access is known."""
    if "version" not in request.query:
        return None, None
    try:
        return _version_number(request, -1), None
    except NotFound as refusal:
        return -1, refusal


async def _grant(request: web.Request, kind: str | None = None,
                 page: int | None = None) -> tuple[catalog.DocumentGrant, DocumentVersion]:
    """Session, access check and the requested (default: current) version in one read
    (catalog.GRANT_BY_TOKEN: its route is `reads_own_session`); logs the access."""
    params = session_params(request)
    document_id, refusal = path_id(request, "document_id")
    number, bad_version = _asked_version(request)
    async with request.app[keys.DB].session() as s:
        row = await signed_in(request, (await s.exec(  # type: ignore[call-overload]
            catalog.GRANT_BY_TOKEN,
            params={**params, "document_id": document_id, "number": number})).first())
    verdict = refusal or catalog.grant_of(row, document_id)
    if isinstance(verdict, DomainError):
        raise verdict
    grant, version = verdict
    if bad_version is not None:
        raise bad_version
    if version is None:
        number = grant.document.version if number is None else number
        raise NotFound(f"version {number} of document {document_id} not found")
    if kind is not None:
        await _log_read(request.app[DOCUMENTS], grant.document, version.number,
                        grant.user_id, kind, page)
    return grant, version


async def _log_read(rt: DocumentRuntime, doc: Document, version: int | None, user_id: int,
                    kind: str, page: int | None = None) -> None:
    """Every read in the access log: a confidential document's is written before anything of
    it is served (nothing is served when it cannot be), the others within a second."""
    assert doc.id is not None
    if not doc.confidential:
        rt.access.record(doc.id, version, user_id, kind, page)
        return
    try:
        await rt.access.record_now(doc.id, version, user_id, kind, page)
    except Exception as exc:  # the database refused the row: nothing is shown
        raise ReadNotLogged("this confidential document's access log cannot be written "
                            "right now, so nothing of it is shown; try again") from exc


def _pdf_path(rt: DocumentRuntime, v: DocumentVersion) -> Path:
    """The PDF that pages are rendered from (the upload, or its conversion)."""
    if v.converted:
        return rt.store.derived_dir(v.sha256) / "converted.pdf"
    return rt.store.path_for(v.sha256)


def _safe_copy(rt: DocumentRuntime, v: DocumentVersion) -> Path:
    if not v.status.finished:
        raise Conflict("the document is still being processed", code="not_ready")
    if not v.status.usable:
        raise NotFound("this version was rejected")
    if not v.has_safe_copy:
        raise Conflict("no safe copy for download exists; view the pages instead",
                       code="no_safe_copy")
    return rt.store.derived_dir(v.sha256) / "document.pdf"


async def _identity(request: web.Request, user: User) -> str:
    """The viewer part of the watermark: full name – unit."""
    async with request.app[keys.DB].session() as s:
        unit = await s.get(Unit, user.unit_id) if user.unit_id else None
    return " – ".join(p for p in (user.full_name, unit.name if unit else "") if p)


def _stamped(request: web.Request, identity: str) -> list[str]:
    """The watermark lines: identity – dd/mm/yyyy HH:MM (now, in the server's time zone)."""
    zone = ZoneInfo(request.app[keys.SETTINGS].timezone)
    moment = datetime.now(zone).strftime("%d/%m/%Y %H:%M")
    return [" – ".join(p for p in (identity, moment) if p)]


async def _watermark(request: web.Request, user: User) -> list[str]:
    return _stamped(request, await _identity(request, user))


async def _confidential_image(request: web.Request, rt: DocumentRuntime,
                              grant: catalog.DocumentGrant,
                              v: DocumentVersion, page: int, width: int, kind: str) -> bytes:
    """A page image watermarked for this viewer, from the per-process cache when the same
    viewer fetched the same image in the current time bucket (DocumentRuntime.page_images).

    The key holds everything that makes the image differ: the version, page, width and kind,
    the viewer's user id *and* their watermark text (name – unit), and the time bucket. The
    image keeps the time of its first render; within a bucket (10 minutes by default) it is
    served again, so the time on it is at most one bucket old. The access log still records
    every fetch with its exact time."""
    user = grant.access.user
    identity = await _identity(request, user)
    key = (v.id, page, width, kind, grant.user_id, identity, rt.watermark_bucket())
    cached = rt.page_images.get(key)
    if cached is not None:
        return cached
    rendered = await _render(rt, v, page, width, watermark_lines=_stamped(request, identity))
    if not rendered.placeholder:  # a failure may be transient: never keep its stand-in
        rt.page_images.put(key, rendered.jpeg)
    return rendered.jpeg


async def _render(rt: DocumentRuntime, v: DocumentVersion, page: int, width: int,
                  watermark_lines: list[str] | None = None) -> render.RenderedPage:
    """A page image made by a worker (a worker-made placeholder if the page fails)."""
    sizes = v.page_sizes or []
    size = (sizes[page][0], sizes[page][1]) if page < len(sizes) else None
    try:
        return await render.render_view(rt.pool, _pdf_path(rt, v), page, width,
                                        watermark_lines=watermark_lines, limits=rt.limits,
                                        page_size=size)
    except render.PageUnavailable:
        raise PageUnavailable("the page cannot be shown right now; try again") from None


# --- lists and details ---------------------------------------------------------------------


@routes.get("/api/meetings/{meeting_id}/documents")
@reads_own_session
async def list_documents(request: web.Request) -> web.Response:
    """Two reads (the caller's session and access; the documents with their versions) at
    every request. The ETag is a tag of every column the list is made from: a tablet's
    If-None-Match that names it is answered 304 without the list being built."""
    async with request.app[keys.DB].session() as s:
        access = await signed_in_meeting_access(s, request)
        listing = await listed(s, access.meeting.id, access.role)  # type: ignore[arg-type]
    headers = {"ETag": listing.tag, "Cache-Control": REVALIDATE}
    if any(tag.value == listing.tag.strip('"') or tag.value == "*"
           for tag in request.if_none_match or ()):
        return web.Response(status=304, headers=headers)
    return web.json_response(listing_dict(listing), headers=headers)


@routes.get("/api/meetings/{meeting_id}/documents/search")
async def search_meeting(request: web.Request) -> web.Response:
    user, rt, q = current_user(request), request.app[DOCUMENTS], _query(request)
    async with request.app[keys.DB].session() as s:
        access = await meeting_access(s, request)
        docs = await catalog.meeting_documents(s, access.meeting.id, access.role)  # type: ignore[arg-type]
        versions = await catalog.versions_of(s, [d.id for d in docs])  # type: ignore[misc]
    hits: list[dict[str, Any]] = []
    confidential = False
    for doc in docs:
        current = next((v for v in versions[doc.id] if v.number == doc.version), None)  # type: ignore[index]
        if current is None or not current.status.usable or len(hits) >= MAX_HITS:
            continue
        index = await rt.text_index(current.id, current.page_count or 0)  # type: ignore[arg-type]
        found = index.search(q, max_hits=MAX_HITS - len(hits))
        if found:
            await _log_read(rt, doc, doc.version, user.id, "search")  # type: ignore[arg-type]
            confidential = confidential or doc.confidential
        hits += [{"document_id": doc.id, "title": doc.title, "page": h.page_index,
                  "snippet": h.snippet, "start": h.start, "end": h.end} for h in found]
    return web.json_response({"query": q, "hits": hits}, headers=_content_headers(confidential))


def _content_headers(confidential: bool) -> dict[str, str] | None:
    """A confidential document's text (search snippets) is stored by no browser cache."""
    return {"Cache-Control": "no-store", CONFIDENTIAL_HEADER: "1"} if confidential else None


@routes.get("/api/documents/{document_id}")
async def details(request: web.Request) -> web.Response:
    """The document and its versions from one moment (catalog.with_versions): read apart,
    a version made current in between paired the old current version with the new one."""
    user = current_user(request)
    document_id = int_id(request, "document_id")
    async with request.app[keys.DB].session() as s:
        grant = await catalog.require_document(s, user, document_id)
        versions = await catalog.with_versions(s, grant)
    number = _version_number(request, grant.document.version)
    if all(v.number != number for v in versions):
        raise NotFound(f"version {number} of document {document_id} not found")
    await _log_read(request.app[DOCUMENTS], grant.document, number, grant.user_id, "details")
    headers = {CONFIDENTIAL_HEADER: "1"} if grant.document.confidential else None
    return web.json_response(catalog.details_dict(grant, versions), headers=headers)


# Checks and applies an edit inside the edit's transaction (raising leaves nothing changed).
Change = Callable[[AsyncSession, Document, list[DocumentVersion]], Awaitable[None]]


def check_current(doc: Document, seen: int | None) -> None:
    """A tab acting on the version it shows: refused once another version is current."""
    if seen is not None and seen != doc.version:
        raise Conflict(f"this page shows version {seen}; the document is now at version "
                       f"{doc.version}: reload it and try again", code="stale_version")


async def _edit(request: web.Request, change: Change,
                seen: int | None = None) -> tuple[Document, dict[str, Any]]:
    user = current_user(request)
    document_id = int_id(request, "document_id")
    async with request.app[keys.DB].session() as s:
        grant = await catalog.require_document(s, user, document_id, Action.upload_document)
        doc = grant.document
        check_current(doc, seen)
        was_published, was_confidential = doc.published, doc.confidential
        versions = (await catalog.versions_of(s, [document_id]))[document_id]
        await change(s, doc, versions)
        doc.updated_at = utcnow()
        s.add(doc)
        data = catalog.document_dict(doc, versions)
    rt = request.app[DOCUMENTS]
    if was_published and not doc.published:
        await rt.sio.emit("document:withdrawn", {"document_id": doc.id,
                                                 "meeting_id": doc.meeting_id},
                          room=meeting_room(doc.meeting_id))
        await rt.sio.close_room(doc_room(document_id, presenters=False))
    else:
        await rt.emit_audience(doc, "document:updated", data)
    if was_confidential != doc.confidential:
        # Open viewers re-render under the new rules at once, and every tablet of the
        # meeting drops what its service worker kept of the document (docs/protocol.md).
        await rt.emit_audience(doc, "document:confidential", {
            "document_id": doc.id, "meeting_id": doc.meeting_id,
            "confidential": doc.confidential, "version": doc.version})
    await request.app[keys.BUS].publish(DocumentChanged(doc.meeting_id, document_id,
                                                        doc.published, was_published))
    return doc, data


@routes.patch("/api/documents/{document_id}")
async def edit(request: web.Request) -> web.Response:
    body = await read_body(request, DocumentEdit)

    async def change(s: AsyncSession, doc: Document, _: list[DocumentVersion]) -> None:
        if body.title is not None:
            title = " ".join(body.title.split())
            if not 1 <= len(title) <= 300:
                raise Invalid("title: must be 1 to 300 characters")
            doc.title = title
        if "agenda_item_id" in body.model_fields_set:
            if body.agenda_item_id is not None:  # an item of the document's own meeting
                await agenda.get_item(s, doc.meeting_id, body.agenda_item_id)
            doc.agenda_item_id = body.agenda_item_id
        if body.confidential is not None:
            doc.confidential = body.confidential

    _, data = await _edit(request, change, body.version)
    return web.json_response(data)


@routes.post("/api/documents/{document_id}/publish")
async def publish(request: web.Request) -> web.Response:
    body = await read_body(request, Publish)

    async def change(_: AsyncSession, doc: Document, versions: list[DocumentVersion]) -> None:
        if body.published and doc.status.value == "rejected":
            raise Conflict("a rejected document cannot be published; upload a new version",
                           code="rejected")
        # Taken back after delegates had it: withdrawn (no new version until published again).
        if body.published:
            doc.withdrawn = False
        elif doc.published:
            doc.withdrawn = True
        doc.published = body.published

    _, data = await _edit(request, change, body.version)
    return web.json_response(data)


# --- content -------------------------------------------------------------------------------


@routes.get("/api/documents/{document_id}/pdf")
@reads_own_session
async def pdf(request: web.Request) -> web.StreamResponse:
    grant, v = await _grant(request, "pdf")
    if grant.document.confidential:
        raise Forbidden("confidential documents are view-only", code="view_only")
    path = _safe_copy(request.app[DOCUMENTS], v)
    name = Path(grant.document.filename).stem + ".pdf"
    # Revalidated at every read (a 304 when unchanged): were it cached for a day, a document
    # made confidential meanwhile would stay readable in the clear, and unlogged.
    return web.FileResponse(path, headers={
        "Content-Type": "application/pdf", "Content-Disposition": content_disposition(name, inline=True),
        "Cache-Control": REVALIDATE})


def _page_number(request: web.Request, v: DocumentVersion) -> int:
    page = int_id(request, "page")
    if v.page_count is None:
        if v.status.finished:
            raise NotFound("this version was rejected")
        raise Conflict("the page count is not known yet", code="not_ready")
    if page >= v.page_count:
        raise NotFound(f"page {page} not found (the document has {v.page_count})")
    return page


def _width(request: web.Request, default: int) -> int:
    width = query_int(request, "width", default, low=256, high=3072)
    if width % 256:
        raise Invalid("width: 256 to 3072 in steps of 256")
    return width


def _ahead_of_its_pdf(rt: DocumentRuntime, v: DocumentVersion, page: int) -> bool:
    """The page's image at the default width is here, the PDF to render it from is not."""
    return ((rt.store.derived_dir(v.sha256) / "pages" / f"{page:04d}.jpg").is_file()
            and not _pdf_path(rt, v).is_file())


async def _image(request: web.Request, kind: str) -> web.StreamResponse:
    rt: DocumentRuntime = request.app[DOCUMENTS]
    page = int_id(request, "page")
    grant, v = await _grant(request, kind, page)
    page = _page_number(request, v)
    thumb = kind == "thumb"
    width = rt.limits.thumb_width if thumb else _width(request, rt.limits.raster_width)
    if grant.document.confidential:
        jpeg = await _confidential_image(request, rt, grant, v, page, width, kind)
        return web.Response(body=jpeg, content_type="image/jpeg",
                            headers={"Cache-Control": "no-store", CONFIDENTIAL_HEADER: "1"})
    derived = rt.store.derived_dir(v.sha256)
    if thumb:
        path = derived / "thumbs" / f"{page:04d}.jpg"
    elif width == rt.limits.raster_width:
        path = derived / "pages" / f"{page:04d}.jpg"
    else:
        path = derived / f"w{width}" / f"{page:04d}.jpg"
    if not path.is_file() and _ahead_of_its_pdf(rt, v, page):
        # A cascade mirror's page 1, crossed ahead of its PDF (server/cascade/topic/
        # documents_mirror.py): the one image there is, for every width and as its own
        # thumbnail, until the node renders the page from the PDF. No worker: a resize made
        # by one at every node of the tree at the same moment was page 1's bottleneck.
        path = derived / "pages" / f"{page:04d}.jpg"
    if not path.is_file():
        rendered = await _render(rt, v, page, width)
        if rendered.placeholder:
            return web.Response(body=rendered.jpeg, content_type="image/jpeg",
                                headers={"Cache-Control": "no-store"})
        await asyncio.to_thread(raster.write_atomic, path, rendered.jpeg)
    return web.FileResponse(path, headers={"Content-Type": "image/jpeg",
                                           "Cache-Control": REVALIDATE})


@routes.get("/api/documents/{document_id}/pages/{page}")
@reads_own_session
async def page_image(request: web.Request) -> web.StreamResponse:
    return await _image(request, "page")


@routes.get("/api/documents/{document_id}/thumbs/{page}")
@reads_own_session
async def thumbnail(request: web.Request) -> web.StreamResponse:
    return await _image(request, "thumb")


@routes.get("/api/documents/{document_id}/search")
@reads_own_session
async def search_document(request: web.Request) -> web.Response:
    q = _query(request)
    grant, v = await _grant(request, "search")
    if not v.status.usable:
        raise Conflict("the document is not processed yet", code="not_ready")
    index = await request.app[DOCUMENTS].text_index(v.id, v.page_count or 0)  # type: ignore[arg-type]
    hits = [{"page": h.page_index, "snippet": h.snippet, "start": h.start, "end": h.end}
            for h in index.search(q, max_hits=MAX_HITS)]
    return web.json_response({"query": q, "hits": hits},
                             headers=_content_headers(grant.document.confidential))


@routes.get("/api/documents/{document_id}/export")
@reads_own_session
async def export(request: web.Request) -> web.Response:
    rt: DocumentRuntime = request.app[DOCUMENTS]
    flatten = request.query.get("flatten", "").lower() in {"1", "true", "yes"}
    grant, v = await _grant(request, "export")
    if v.number != grant.document.version:
        raise Conflict("only the current version can be exported", code="stale_version")
    source = _safe_copy(rt, v)
    viewer = Viewer(grant.user_id, grant.is_presenter)
    annotations = await rt.annotations.visible(grant.document.id, v.number, viewer)  # type: ignore[arg-type]
    lines = await _watermark(request, grant.access.user) if grant.document.confidential else []
    target = rt.store.root / "tmp" / f"export-{uuid.uuid4().hex}.pdf"
    try:
        await rt.pool.run(export_job.export_to_file, str(source),
                          [a.to_dict() for a in annotations], flatten, lines, str(target),
                          timeout=EXPORT_TIMEOUT_S, cleanup=(target,))
        body = await asyncio.to_thread(target.read_bytes)
    finally:
        target.unlink(missing_ok=True)
    name = f"{Path(grant.document.filename).stem} - {grant.access.user.full_name}.pdf"
    return web.Response(body=body, content_type="application/pdf",
                        headers={"Content-Disposition": content_disposition(name),
                                 "Cache-Control": "no-store", **(
                                     {CONFIDENTIAL_HEADER: "1"}
                                     if grant.document.confidential else {})})


# --- audit and diagnostics -----------------------------------------------------------------


@routes.get("/api/documents/{document_id}/access")
@reads_own_session
async def access_log(request: web.Request) -> web.Response:
    grant, _ = await _grant(request)
    if not grant.can_manage:
        raise Forbidden("only the meeting's chair and secretary see the access log")
    rt = request.app[DOCUMENTS]
    await rt.access.flush()
    async with request.app[keys.DB].session() as s:
        rows = await s.exec(select(DocumentAccess, User).join(User)
                            .where(DocumentAccess.document_id == grant.document.id)
                            .order_by(col(DocumentAccess.id).desc()).limit(500))
        entries = [{"user_id": a.user_id, "name": u.full_name, "kind": a.kind,
                    "version": a.version, "page": a.page, "at": a.at.isoformat()}
                   for a, u in rows.all()]
    return web.json_response({"entries": entries})


@routes.get("/api/debug/loop-lag")
async def loop_lag(request: web.Request) -> web.Response:
    if current_user(request).role != Role.admin:
        raise Forbidden("administrators only")
    monitor = request.app[DOCUMENTS].lag
    data = monitor.summary()
    if request.query.get("reset") in {"1", "true"}:
        monitor.samples.clear()
    return web.json_response(data)
