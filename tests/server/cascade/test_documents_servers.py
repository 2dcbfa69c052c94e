"""A document across three real `run.py` processes (province → city → ward, each with its own
SQLite and data directory): published at the province, page 1 and then the whole document
(PDF, search) on the ward delegate's tablet, served by the ward."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.server.cascade import test_servers as servers
from tests.server.documents_support import fetch, make_pdf, upload

people, until, mirrored_meeting = servers.people, servers.until, servers.mirrored_meeting
Node = servers.Node


@pytest.fixture
async def nodes(tmp_path: Path) -> AsyncIterator[dict[str, Node]]:
    """Province → city → ward, as in tests/server/cascade/test_servers.py; three processes
    at once on a busy machine: more time to start."""
    async with servers.running_tree(tmp_path, ready_timeout=120) as made:
        yield made


async def test_a_document_published_at_the_province_is_read_on_a_ward_tablet(
        nodes: dict[str, Node], people: list[Any], tmp_path: Path) -> None:
    province, ward = nodes["province"], nodes["ward"]
    chair, secretary = await province.login("chutri"), await province.login("thuky")
    people += [chair.session, secretary.session]
    _, mine = await chair.call("GET", "/api/meetings")
    meeting = mine["meetings"][0]
    assert (await chair.call("POST", f"/api/meetings/{meeting['id']}/open"))[0] == 200
    status, _ = await chair.call("PUT", f"/api/meetings/{meeting['id']}/nodes",
                                 {"nodes": ["city", "ward"], "seats": {"city": 5, "ward": 2}})
    assert status == 200
    ward_meeting = await mirrored_meeting(ward, people, meeting["title"])

    status, doc = await upload(secretary, meeting["id"], make_pdf(tmp_path, pages=3),
                               title="Nghị quyết")
    assert status == 202, doc

    async def processed() -> bool:
        _, body = await secretary.call("GET", f"/api/documents/{doc['id']}")
        return body["status"] == "ready"
    await until(processed, 60, "processed at the province")
    status, _ = await secretary.call("POST", f"/api/documents/{doc['id']}/publish",
                                     {"published": True})
    assert status == 200

    tablet = await ward.login("daibieu")
    people.append(tablet.session)

    async def listed() -> dict[str, Any] | None:
        _, body = await tablet.call("GET", f"/api/meetings/{ward_meeting}/documents")
        return next((d for g in body["groups"] for d in g["documents"]
                     if d["title"] == "Nghị quyết" and d["status"] == "ready"), None)
    mirror = await until(listed, 30, "the document on the ward tablet")
    status, kind, _, _ = await fetch(tablet, f"/api/documents/{mirror['id']}/pages/0")
    assert status == 200 and kind == "image/jpeg"

    async def whole() -> bool:
        _, body = await tablet.call("GET", f"/api/documents/{mirror['id']}")
        return bool(body["has_pdf"])
    await until(whole, 60, "the whole document at the ward")
    status, body = await tablet.call("GET", f"/api/documents/{mirror['id']}/search?q=trang+so+2")
    assert status == 200 and [h["page"] for h in body["hits"]] == [1], body
