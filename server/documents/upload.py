"""Document uploads: multipart streamed to the blob store, never trusting the file name or the
part's content type. The size limit is enforced while streaming, the kind is decided by magic
bytes, and nothing is stored unless the whole request is acceptable."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from aiohttp import BodyPartReader, web

from documents import catalog
from documents.db_models import Document, DocumentStatus, DocumentVersion, VersionStatus
from documents.errors import DocumentRejected, RejectCode
from documents.storage import BlobWriter, StoredBlob, sanitize_display_name
from documents.validation import SNIFF_BYTES, ZIP_MAGIC, sniff_bytes
from rooms import agenda, meetings
from rooms.errors import Conflict, Invalid
from rooms.permissions import Action
from server.core import keys
from server.core.auth import current_user
from server.core.http_util import form_errors, int_id, parse_int
from server.documents import processing as doc_processing
from server.documents.keys import DOCUMENTS
from server.documents.routes import check_current
from server.documents.runtime import DocumentRuntime

routes = web.RouteTableDef()
CHUNK_BYTES = 256 * 1024
FIELD_BYTES = 2000
FIELDS = ("title", "agenda_item_id", "confidential", "meeting_id", "base_version")
_STATUS = {RejectCode.TOO_LARGE: 413, RejectCode.NOT_PDF: 415}
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}


@dataclass
class Received:
    writer: BlobWriter
    filename: str
    fields: dict[str, str]


def rejection_response(exc: DocumentRejected) -> web.Response:
    return web.json_response({"error": {"code": str(exc.code), "message": exc.message_en,
                                        "message_vi": exc.message_vi}},
                             status=_STATUS.get(exc.code, 400))


def duplicate_response(document_id: int) -> web.Response:
    return web.json_response({"error": {
        "code": "duplicate", "document_id": document_id,
        "message": f"this file is already document {document_id} of this meeting",
        "message_vi": f"Tệp này đã có trong cuộc họp (tài liệu số {document_id})."}}, status=409)


async def _read_field(part: BodyPartReader) -> str:
    data = bytearray()
    while chunk := await part.read_chunk(1024):
        data += chunk
        if len(data) > FIELD_BYTES:
            raise Invalid(f"{part.name}: too long")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise Invalid(f"{part.name}: not UTF-8 text") from None


async def _stream_file(part: BodyPartReader, rt: DocumentRuntime) -> BlobWriter:
    writer = rt.store.writer(max_bytes=rt.limits.max_bytes, original_name=part.filename)
    try:
        head = bytearray()
        checked = False
        while chunk := await part.read_chunk(CHUNK_BYTES):
            if not checked:
                head += chunk[: SNIFF_BYTES - len(head)]
                if len(head) >= SNIFF_BYTES:
                    _check_magic(bytes(head))
                    checked = True
            await asyncio.to_thread(writer.write, chunk)
        if writer.size == 0:
            raise DocumentRejected(RejectCode.EMPTY)
        if not checked:
            _check_magic(bytes(head))
        return writer
    except BaseException:
        writer.abort()
        raise


def _check_magic(head: bytes) -> None:
    if sniff_bytes(head) is None and not head.startswith(ZIP_MAGIC):
        raise DocumentRejected(RejectCode.NOT_PDF, f"magic={head[:8]!r}")


async def receive(request: web.Request, rt: DocumentRuntime) -> Received:
    """Reads the whole multipart body; the caller commits or aborts the writer."""
    if request.content_type != "multipart/form-data":
        raise Invalid("send the document as multipart/form-data", code="bad_content_type")
    length = request.content_length
    if length is not None and length > rt.limits.max_bytes + 64 * 1024:
        raise DocumentRejected(RejectCode.TOO_LARGE, f"{length} bytes",
                               limit_mb=rt.limits.max_mb)
    with form_errors():
        reader = await request.multipart()
    writer: BlobWriter | None = None
    filename, fields = "", {}
    try:
        with form_errors():  # a malformed multipart body: 400 bad_form
            while (part := await reader.next()) is not None:
                if not isinstance(part, BodyPartReader):
                    raise Invalid("nested multipart bodies are not accepted")
                if part.name == "file" and writer is None:
                    filename = sanitize_display_name(unquote(part.filename or ""))
                    writer = await _stream_file(part, rt)
                elif part.name in FIELDS and part.name not in fields:
                    fields[part.name] = await _read_field(part)
                else:
                    raise Invalid(f"{part.name}: unexpected part")
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    if writer is None:
        raise Invalid("attach the document as the 'file' part", code="no_file")
    return Received(writer, filename, fields)


def _title(fields: dict[str, str], filename: str) -> str:
    raw = fields.get("title") or Path(filename).stem or filename
    title = " ".join(raw.split())
    if not 1 <= len(title) <= 300:
        raise Invalid("title: must be 1 to 300 characters")
    return title


def _agenda_item(fields: dict[str, str]) -> int | None:
    raw = fields.get("agenda_item_id", "").strip()
    if not raw:
        return None
    return parse_int(raw, "agenda_item_id")


def _flag(fields: dict[str, str]) -> bool:
    raw = fields.get("confidential", "").strip().lower()
    if raw not in _TRUE | _FALSE:
        raise Invalid("confidential: must be true or false")
    return raw in _TRUE


async def _commit(writer: BlobWriter) -> StoredBlob:
    return await asyncio.to_thread(writer.commit)


@routes.post("/api/meetings/{meeting_id}/documents")
async def upload(request: web.Request) -> web.Response:
    user, rt = current_user(request), request.app[DOCUMENTS]
    meeting_id = int_id(request, "meeting_id")
    async with request.app[keys.DB].session() as s:
        await meetings.require(s, user, meeting_id, Action.upload_document)
    try:
        got = await receive(request, rt)
    except DocumentRejected as exc:
        return rejection_response(exc)
    try:
        title, item, confidential = _title(got.fields, got.filename), _agenda_item(got.fields), \
            _flag(got.fields)
        if item is not None:  # an item of this meeting, checked before anything is stored
            async with request.app[keys.DB].session() as s:
                await agenda.get_item(s, meeting_id, item)
        blob = await _commit(got.writer)
    finally:
        got.writer.abort()  # no-op once committed
    async with request.app[keys.DB].session() as s:
        duplicate = await catalog.duplicate_of(s, meeting_id, blob.digest)
        if duplicate is not None:
            return duplicate_response(duplicate)
        doc = Document(meeting_id=meeting_id, agenda_item_id=item, title=title,
                       filename=got.filename, confidential=confidential,
                       status=DocumentStatus.processing, created_by=user.id)  # type: ignore[arg-type]
        s.add(doc)
        await s.flush()
        version = _new_version(doc, 1, blob, user.id)  # type: ignore[arg-type]
        s.add(version)
        await s.flush()
        data = catalog.document_dict(doc, [version])
    doc_processing.start(rt, doc.id, version.id)  # type: ignore[arg-type]
    await rt.emit_audience(doc, "document:updated", data)
    return web.json_response(data, status=202)


@routes.post("/api/documents/{document_id}/versions")
async def new_version(request: web.Request) -> web.Response:
    user, rt = current_user(request), request.app[DOCUMENTS]
    document_id = int_id(request, "document_id")
    async with request.app[keys.DB].session() as s:
        grant = await catalog.require_document(s, user, document_id, Action.upload_document)
        _check_withdrawn(grant.document)
        _check_no_pending((await catalog.versions_of(s, [document_id]))[document_id],
                          grant.document)
    try:
        got = await receive(request, rt)
    except DocumentRejected as exc:
        return rejection_response(exc)
    try:
        # Checked before anything is stored: the page the upload came from (its meeting and
        # the version it showed) must still be the document's.
        meeting, base = _optional_int(got.fields, "meeting_id"), \
            _optional_int(got.fields, "base_version")
        if meeting is not None and meeting != grant.document.meeting_id:
            raise Conflict(f"document {document_id} belongs to another meeting",
                           code="wrong_meeting")
        check_current(grant.document, base)
        blob = await _commit(got.writer)
    finally:
        got.writer.abort()
    async with request.app[keys.DB].session() as s:
        doc = await s.get(Document, document_id)
        assert doc is not None
        versions = (await catalog.versions_of(s, [document_id]))[document_id]
        _check_withdrawn(doc)
        check_current(doc, base)
        _check_no_pending(versions, doc)
        duplicate = await catalog.duplicate_of(s, doc.meeting_id, blob.digest)
        if duplicate is not None:
            return duplicate_response(duplicate)
        version = _new_version(doc, versions[-1].number + 1, blob, user.id)  # type: ignore[arg-type]
        s.add(version)
        doc.updated_at = version.created_at
        s.add(doc)
        await s.flush()
        data = catalog.document_dict(doc, [*versions, version])
    doc_processing.start(rt, document_id, version.id)  # type: ignore[arg-type]
    await rt.emit_audience(doc, "document:updated", data)
    return web.json_response(data, status=202)


def _optional_int(fields: dict[str, str], name: str) -> int | None:
    raw = fields.get(name, "").strip()
    return parse_int(raw, name) if raw else None


def _check_withdrawn(doc: Document) -> None:
    if doc.withdrawn:
        raise Conflict("this document was withdrawn; publish it again before uploading "
                       "a new version", code="withdrawn")


def _check_no_pending(versions: list[DocumentVersion], doc: Document) -> None:
    latest = versions[-1] if versions else None
    if latest is not None and latest.number > doc.version and not latest.status.finished:
        raise Conflict("a newer version is still being processed", code="processing")


def _new_version(doc: Document, number: int, blob: StoredBlob, user_id: int) -> DocumentVersion:
    return DocumentVersion(document_id=doc.id, number=number, sha256=blob.digest,  # type: ignore[arg-type]
                           size=blob.size, status=VersionStatus.validating, created_by=user_id)
