"""What changed between a document's versions, page by page (docs/protocol.md (Documents)).

The same comparison as the annotations' carry-over (documents/version_mapping.py: extracted
page text, normalised), seen from the new version's pages, so the secretary's upload and a
delegate's reader can say "page 2 changed, page 5 is new, page 3 moved to 4" and how many of
the caller's annotations on each page wait for review (`flagged`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiohttp import web
from sqlmodel.ext.asyncio.session import AsyncSession

from documents import catalog
from documents.db_models import Document, DocumentVersion
from documents.version_mapping import map_pages, normalise_page_text
from rooms.errors import Conflict, NotFound
from server.core import keys
from server.core.auth import current_user
from server.core.http_util import int_id
from server.documents.annotations import Viewer
from server.documents.keys import DOCUMENTS

routes = web.RouteTableDef()


def page_changes(old_texts: Sequence[str], new_texts: Sequence[str]) -> dict[str, Any]:
    """Each new page: `same`, `moved` (from an old page with identical text), `changed`,
    `added` (beyond the old page count) or `unknown` (no text to compare: a scan); and the
    old pages whose text is nowhere in the new version and whose index is gone (`removed`)."""
    old = [normalise_page_text(t) for t in old_texts]
    new = [normalise_page_text(t) for t in new_texts]
    pages: list[dict[str, Any]] = []
    for q, text in enumerate(new):
        if not text:
            pages.append({"page": q, "change": "unknown", "from_page": None})
        elif q < len(old) and old[q] == text:
            pages.append({"page": q, "change": "same", "from_page": q})
        elif hits := [p for p, t in enumerate(old) if t == text]:
            source = min(hits, key=lambda p: (abs(p - q), p))
            pages.append({"page": q, "change": "moved", "from_page": source})
        else:
            pages.append({"page": q, "change": "changed" if q < len(old) else "added",
                          "from_page": q if q < len(old) else None})
    kept = set(new)
    removed = [p for p, t in enumerate(old) if p >= len(new) and t not in kept]
    return {"pages": pages, "removed": removed}


def _usable(v: DocumentVersion) -> bool:
    return v.status.usable and v.page_count is not None and v.id is not None


async def carry_stale_add(s: AsyncSession, doc: Document, version: int, raw: dict[str, Any]
                          ) -> dict[str, Any] | None:
    """An `add` drawn on the version just before the current one, moved to the page of the
    current version whose text is the same (the mapping the carried annotations follow);
    None when it cannot be carried without guessing: another kind of op, an older version,
    or a page whose text changed or has none (the tablet is refused stale_version)."""
    page = raw.get("page")
    if raw.get("type") != "add" or type(page) is not int or page < 0 or version >= doc.version:
        return None
    versions = (await catalog.versions_of(s, [doc.id]))[doc.id]  # type: ignore[list-item, index]
    earlier = [v for v in versions if v.number < doc.version and _usable(v)]
    current = next((v for v in versions if v.number == doc.version), None)
    if not earlier or earlier[-1].number != version or current is None or not _usable(current):
        return None
    old = earlier[-1]
    old_texts = await catalog.page_texts(s, old.id, old.page_count)  # type: ignore[arg-type]
    new_texts = await catalog.page_texts(s, current.id, current.page_count)  # type: ignore[arg-type]
    if page >= len(old_texts):
        return None
    mapping = map_pages(old_texts, new_texts)[page]
    if mapping.reason is not None:
        return None
    return {**raw, "page": mapping.new_page}


@routes.get("/api/documents/{document_id}/versions/{number}/changes")
async def changes(request: web.Request) -> web.Response:
    user, rt = current_user(request), request.app[DOCUMENTS]
    document_id, number = int_id(request, "document_id"), int_id(request, "number")
    async with request.app[keys.DB].session() as s:
        grant = await catalog.require_document(s, user, document_id)
        versions = (await catalog.versions_of(s, [document_id]))[document_id]
        by_number = {v.number: v for v in versions}
        new = by_number.get(number)
        if new is None:
            raise NotFound(f"version {number} of document {document_id} not found")
        if not _usable(new):
            raise Conflict("this version is not processed yet", code="not_ready")
        earlier = [v for v in versions if v.number < number and _usable(v)]
        if not earlier:
            raise NotFound("there is no earlier version to compare with", code="no_previous")
        old = earlier[-1]
        old_texts = await catalog.page_texts(s, old.id, old.page_count)  # type: ignore[arg-type]
        new_texts = await catalog.page_texts(s, new.id, new.page_count)  # type: ignore[arg-type]
    data = page_changes(old_texts, new_texts)
    flagged: dict[int, int] = {}
    if number == grant.document.version:  # annotations live on the current version only
        viewer = Viewer(grant.user_id, grant.is_presenter)
        for page in await rt.annotations.snapshot(document_id, number, viewer):
            count = sum(1 for a in page["annotations"] if a.get("flagged"))
            if count:
                flagged[page["page"]] = count
    for entry in data["pages"]:
        entry["flagged"] = flagged.get(entry["page"], 0)
    return web.json_response({"document_id": document_id, "version": number,
                              "previous_version": old.number, **data})
