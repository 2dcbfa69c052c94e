"""Search at every node (issue 13, item 1): a mirrored document is current from its page 1,
before its PDF (hence its text) is there; a search in that window must not leave the node
searching an empty text for good once the PDF has been processed there."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlmodel import select

from documents.mirror_models import DocumentCascade
from server.core import keys
from tests.server.cascade.test_documents_across import (
    fetcher,
    member,
    mirrored_doc,
    with_photographs,
)
from tests.server.cascade.tree import cascaded_meeting, tree, until
from tests.server.documents_support import make_pdf, upload_ready


async def test_a_search_before_the_pdf_arrived_does_not_hide_its_text_afterwards(
        tmp_path: Path) -> None:
    async with tree(tmp_path) as t:
        _, meeting_id, _, _, ward_id = await cascaded_meeting(t)
        # The ward's copy of the PDF is held back until the test lets it go (a slow link).
        held, go = fetcher(t.ward), asyncio.Event()
        fetch = held.fetch
        pdfs: list[str] = []

        async def slow_pdf(digest: str, size: int) -> Path:
            if digest in pdfs:
                await go.wait()
            return await fetch(digest, size)
        held.fetch = slow_pdf  # type: ignore[method-assign]
        data = with_photographs(make_pdf(tmp_path, pages=4), 3_000_000)  # page 1 goes first
        doc = await upload_ready(t.province, meeting_id, data, title="Tờ trình ngân sách")
        async with t.province.server.app[keys.DB].session() as s:
            row = (await s.exec(select(DocumentCascade).where(
                DocumentCascade.document_id == doc["id"]))).one()
        assert row.page1_sha256 is not None
        pdfs.append(row.sha256)
        delegate = await member(t.ward, ward_id, "daibieu")
        mirrored = await until(lambda: mirrored_doc(delegate, ward_id, "Tờ trình ngân sách"),
                               20, "page 1 current at the ward")
        _, body = await delegate.call("GET", f"/api/documents/{mirrored['id']}")
        assert not body["has_pdf"]

        async def search() -> list[int]:
            status, body = await delegate.call(
                "GET", f"/api/meetings/{ward_id}/documents/search?q=trang+so+3")
            assert status == 200, body
            return [h["page"] for h in body["hits"]]
        assert await search() == []  # no text at the ward yet: nothing found, nothing wrong
        go.set()

        async def processed() -> dict[str, Any] | None:
            _, body = await delegate.call("GET", f"/api/documents/{mirrored['id']}")
            return body if body["has_pdf"] else None
        await until(processed, 30, "the PDF processed at the ward")
        assert await search() == [2]
