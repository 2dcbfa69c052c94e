"""A published document's later life reaches the ward (issue 13, item 1): a new version (made
current at the ward once processed there), an edit, a withdrawal and a new publication;
a confidential document is watermarked per viewer by the ward, which serves its viewers;
documents never travel up."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.cascade.schemas import NodeError
from tests.server.cascade.test_documents_across import member, mirrored_doc, published
from tests.server.cascade.tree import cascaded_meeting, state, tree, until
from tests.server.documents_support import fetch, make_pdf, upload, wait_ready


async def test_versions_edits_and_withdrawals_reach_the_ward(tmp_path: Path) -> None:
    async with tree(tmp_path) as t:
        _, meeting_id, _, _, ward_id = await cascaded_meeting(t)
        doc = await published(t, meeting_id, tmp_path, "Dự thảo", pages=3)
        delegate = await member(t.ward, ward_id, "daibieu")
        mirror = await until(lambda: mirrored_doc(delegate, ward_id, "Dự thảo"), 20, "doc")
        secretary = await t.province.login("thuky")

        # A new version (5 pages): current at the ward once it has been processed there.
        status, body = await upload(secretary, meeting_id, make_pdf(tmp_path, pages=5,
                                                                    name="v2.pdf"),
                                    path=f"/api/documents/{doc['id']}/versions")
        assert status == 202, body
        await wait_ready(t.province, doc["id"])

        async def second() -> dict | None:  # type: ignore[type-arg]
            found = await mirrored_doc(delegate, ward_id, "Dự thảo")
            return found if found and found["version"] == 2 else None
        now = await until(second, 30, "version 2 at the ward")
        assert now["id"] == mirror["id"] and now["page_count"] == 5

        # Renamed, then withdrawn: the ward's delegates no longer see it; published again.
        status, _ = await secretary.call("PATCH", f"/api/documents/{doc['id']}",
                                         {"title": "Dự thảo sửa"})
        assert status == 200
        await until(lambda: mirrored_doc(delegate, ward_id, "Dự thảo sửa"), 10, "renamed")
        status, _ = await secretary.call("POST", f"/api/documents/{doc['id']}/publish",
                                         {"published": False})
        assert status == 200

        async def gone() -> bool:
            return await mirrored_doc(delegate, ward_id, "Dự thảo sửa", None) is None
        await until(gone, 10, "withdrawn at the ward")
        status, _ = await delegate.call("GET", f"/api/documents/{mirror['id']}")
        assert status == 404
        status, _ = await secretary.call("POST", f"/api/documents/{doc['id']}/publish",
                                         {"published": True})
        assert status == 200
        await until(lambda: mirrored_doc(delegate, ward_id, "Dự thảo sửa"), 10, "back")


async def test_a_confidential_document_is_watermarked_per_viewer_at_the_ward(
        tmp_path: Path) -> None:
    async with tree(tmp_path) as t:
        _, meeting_id, _, _, ward_id = await cascaded_meeting(t)
        await published(t, meeting_id, tmp_path, "Mật", pages=2, confidential=True)
        first = await member(t.ward, ward_id, "daibieu")
        second = await member(t.ward, ward_id, "daibieu2")
        mirror = await until(lambda: mirrored_doc(first, ward_id, "Mật"), 30, "doc")
        assert mirror["confidential"] and not mirror["has_pdf"]
        images = []
        for viewer in (first, second):
            status, kind, jpeg, headers = await fetch(viewer,
                                                      f"/api/documents/{mirror['id']}/pages/0")
            assert status == 200 and kind == "image/jpeg", status
            assert headers["Cache-Control"] == "no-store"
            images.append(jpeg)
        assert images[0] != images[1]  # each viewer's name is on their copy
        status, _, _, _ = await fetch(first, f"/api/documents/{mirror['id']}/pdf")
        assert status == 403


async def test_documents_never_travel_up(tmp_path: Path) -> None:
    async with tree(tmp_path) as t:
        _, _, _, _, ward_id = await cascaded_meeting(t)
        with pytest.raises(NodeError) as refused:
            await state(t.ward).report(ward_id, "documents.changed", {"document": 1})
        assert refused.value.code == "invalid"
