"""Documents down the tree (issue 13, item 1) across three in-process nodes: a document the
province publishes reaches the city's and the ward's tablets, page 1 first, each file
crossing each link once; search and per-viewer watermarks at the node that serves the
viewer; a second meeting with the same file fetches nothing; bad blob requests refused."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import io
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from PIL import Image
from sqlmodel import select

from documents.mirror_models import DocumentCascade
from documents.storage import BlobStore
from documents.worker_pool import PRIORITY_HIGH, PRIORITY_LOW, PRIORITY_NORMAL
from rooms.users import find_user
from server.cascade.blobs import FETCHER, HEADER, BlobFetcher, BlobRefused
from server.cascade.tokens import make_token
from server.cascade.topics import Entry
from server.core import keys
from server.core.settings import NodeSettings
from server.documents.keys import DOCUMENTS
from testkit.cascade_documents import read_blob_bytes
from testkit.province import within
from tests.conftest import Client, Harness
from tests.server.cascade.tree import WARD_SECRET, Tree, cascaded_meeting, state, tree, until
from tests.server.documents_support import fetch, make_pdf, upload_ready


def fetcher(h: Harness) -> BlobFetcher:
    return h.server.app[FETCHER]


async def member(h: Harness, meeting_id: int, username: str, role: str = "delegate") -> Client:
    """`username` of node `h` invited to its mirror by its secretary, logged in."""
    secretary = await h.login("thuky")
    async with h.server.app[keys.DB].session() as s:
        user = await find_user(s, username)
    assert user is not None
    status, body = await secretary.call("POST", f"/api/meetings/{meeting_id}/members",
                                        {"role": role, "user_id": user.id})
    assert status in (200, 201), body
    return await h.login(username)


async def mirrored_doc(client: Client, meeting_id: int, title: str,
                       status: str | None = "ready") -> dict[str, Any] | None:
    code, body = await client.call("GET", f"/api/meetings/{meeting_id}/documents")
    assert code == 200, body
    for group in body["groups"]:
        for doc in group["documents"]:
            if doc["title"] == title and (status is None or doc["status"] == status):
                return doc  # type: ignore[no-any-return]
    return None


def with_photographs(pdf: bytes, size: int) -> bytes:
    """`pdf` with `size` bytes of photographs (noise) on its last page: a big file whose page
    1 is plain text, so page 1 crosses ahead of it (within its share of the file's size)."""
    import os

    import pymupdf

    doc = pymupdf.open(stream=pdf, filetype="pdf")
    side = int((size / 3) ** 0.5)
    image = pymupdf.Pixmap(pymupdf.csRGB, side, side, os.urandom(side * side * 3), False)
    page = doc[-1]
    page.insert_image(pymupdf.Rect(72, 400, 300, 628), stream=image.tobytes("png"))
    return bytes(doc.tobytes(deflate=True))


async def published(t: Tree, meeting_id: int, tmp_path: Path, title: str, pages: int = 4,
                    confidential: bool = False) -> dict[str, Any]:
    return await upload_ready(t.province, meeting_id, make_pdf(tmp_path, pages=pages),
                              title=title, confidential="true" if confidential else "false")


async def test_a_published_document_reaches_every_node_page_1_first_each_file_once(
        tmp_path: Path) -> None:
    async with tree(tmp_path) as t:
        chair, meeting_id, key, _, ward_id = await cascaded_meeting(t)
        data = with_photographs(make_pdf(tmp_path, pages=4), 3_000_000)  # page 1 worth sending
        # Every wait is bounded and named: a hang fails here, saying where, not in pytest's
        # timeout with an idle event loop (CI, 7 Dec).
        async with within(40, "the upload processed and published at the province"):
            doc = await upload_ready(t.province, meeting_id, data, title="Tờ trình ngân sách")
        async with within(10, "the ward delegate invited and logged in"):
            delegate = await member(t.ward, ward_id, "daibieu")

        async def at_ward() -> dict[str, Any] | None:
            return await mirrored_doc(delegate, ward_id, "Tờ trình ngân sách")
        mirrored = await until(at_ward, 20, "the document at the ward")
        assert mirrored["page_count"] == 4 and not mirrored["confidential"]
        async with within(10, "page 1 served at the ward"):
            status, kind, jpeg, _ = await fetch(delegate,
                                                f"/api/documents/{mirrored['id']}/pages/0")
        assert status == 200 and kind == "image/jpeg" and jpeg[:2] == b"\xff\xd8"
        # Its page sizes are loaded as page 1 became current: the first page turn presenting
        # it reads none, at every node at once (server/cascade/topic/presenter.py).
        logs = t.ward.server.app[DOCUMENTS].annotations.logs
        await until(lambda: asyncio.sleep(0, logs.cached(mirrored["id"]) is not None), 5,
                    "the copy's page sizes loaded at the ward")
        for width in (1280, 2560):  # what other screens ask: soon not the stand-in
            async def real(width: int = width) -> bool:
                status, _, _, headers = await fetch(
                    delegate, f"/api/documents/{mirrored['id']}/pages/0?width={width}")
                return status == 200 and headers["Cache-Control"] != "no-store"
            await until(real, 10, f"page 1 at {width} px")

        # The whole file arrives and is processed at the ward: its PDF, search in its text.
        async def processed() -> dict[str, Any] | None:
            _, body = await delegate.call("GET", f"/api/documents/{mirrored['id']}")
            return body if body["has_pdf"] else None
        await until(processed, 30, "the PDF processed at the ward")
        async with within(10, "search at the ward"):
            status, body = await delegate.call(
                "GET", f"/api/meetings/{ward_id}/documents/search?q=trang+so+3")
        assert status == 200 and [h["page"] for h in body["hits"]] == [2], body
        async with within(10, "the PDF served at the ward"):
            status, kind, pdf, _ = await fetch(delegate, f"/api/documents/{mirrored['id']}/pdf")
        assert status == 200 and pdf.startswith(b"%PDF")

        # Each file crossed each link once: page 1 and the PDF, fetched once at each node
        # (the ward delegate's page and PDF were served from the ward's own disk).
        async with t.province.server.app[keys.DB].session() as s:
            row = (await s.exec(select(DocumentCascade).where(
                DocumentCascade.document_id == doc["id"]))).one()
        assert row.page1_sha256 is not None and row.page1_size
        for h in (t.city, t.ward):
            assert sorted(fetcher(h).fetched) == sorted([row.page1_sha256, row.sha256])
            assert fetcher(h).bytes_received == row.size + row.page1_size
            admin = await h.login("quantri")  # what the benchmark reads on /metrics
            assert await read_blob_bytes(admin.session, h.base) == row.size + row.page1_size

        # A second meeting with the same file: the ward fetches nothing (content addressed).
        before = list(fetcher(t.ward).fetched), fetcher(t.ward).bytes_received
        async with within(20, "a second meeting at the ward"):
            second, second_ward = await another_meeting(t, chair)
        async with within(40, "the same file processed again at the province"):
            await upload_ready(t.province, second, data, title="Lần hai")
        async with within(10, "the ward's secretary logged in"):
            thuky = await t.ward.login("thuky")
        again = await until(lambda: mirrored_doc(thuky, second_ward, "Lần hai"), 20,
                            "the same file in another meeting at the ward")
        async with within(10, "page 1 of the second meeting's copy at the ward"):
            status, _, _, _ = await fetch(thuky, f"/api/documents/{again['id']}/pages/0")
        assert status == 200
        assert (list(fetcher(t.ward).fetched), fetcher(t.ward).bytes_received) == before
        assert key


async def another_meeting(t: Tree, chair: Client) -> tuple[int, int]:
    status, meeting = await chair.call("POST", "/api/meetings", {
        "title": "Họp lần hai", "unit_id": chair.user["unit_id"],
        "starts_at": "2026-12-01T08:00:00+07:00"})
    assert status == 201, meeting
    meeting_id = meeting["id"]
    async with t.province.server.app[keys.DB].session() as s:
        thuky = await find_user(s, "thuky")
    assert thuky is not None
    status, body = await chair.call("POST", f"/api/meetings/{meeting_id}/members",
                                    {"role": "secretary", "user_id": thuky.id})
    assert status in (200, 201), body
    assert (await chair.call("POST", f"/api/meetings/{meeting_id}/open"))[0] == 200
    status, body = await chair.call("PUT", f"/api/meetings/{meeting_id}/nodes", {
        "nodes": ["city", "ward"], "seats": {"city": 5, "ward": 2}})
    assert status == 200, body
    ward_id = await until(lambda: state(t.ward).meeting_of(f"province/{meeting_id}"), 10,
                          "the second meeting at the ward")
    return meeting_id, ward_id


async def test_a_blob_is_served_only_to_a_child_invited_to_a_meeting_that_carries_it(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with tree(tmp_path) as t:
        _, meeting_id, _, _, ward_id = await cascaded_meeting(t)
        doc = await published(t, meeting_id, tmp_path, title="Mật")
        delegate = await member(t.ward, ward_id, "daibieu")
        await until(lambda: mirrored_doc(delegate, ward_id, "Mật"), 20, "the document")
        async with t.province.server.app[keys.DB].session() as s:
            row = await s.get(DocumentCascade, doc["id"])
        assert row is not None
        url = f"{t.city.base}/api/node/blobs/{row.sha256}"

        async def get(headers: dict[str, str], target: str = url) -> int:
            async with aiohttp.ClientSession() as http, http.get(target, headers=headers) as r:
                await r.read()
                return r.status

        good = {HEADER: f"ward {make_token('ward', WARD_SECRET)}"}
        assert await get(good) == 200
        assert await get({**good, "Range": "bytes=10-19"}) == 206
        assert await get({}) == 401
        assert await get({HEADER: f"ward {make_token('ward', 'x' * 22)}"}) == 401
        assert await get({HEADER: f"intruder {make_token('intruder', WARD_SECRET)}"}) == 401
        assert await get({HEADER: "ward ✓"}) == 401
        assert await get(good, f"{t.city.base}/api/node/blobs/{'0' * 64}") == 404
        assert await get(good, f"{t.city.base}/api/node/blobs/..%2F..%2Fetc") == 404
        # The province's other files are not the ward's to fetch (the meeting's are).
        other = t.province.server.app[DOCUMENTS].store.put_bytes(b"%PDF-1.4 private")
        assert await get(good, f"{t.city.base}/api/node/blobs/{other.digest}") == 404
        # Withdrawn at the province: the city no longer hands its file to the ward.
        secretary = await t.province.login("thuky")
        status, _ = await secretary.call("POST", f"/api/documents/{doc['id']}/publish",
                                         {"published": False})
        assert status == 200

        async def refused() -> bool:
            return await get(good) == 404
        await until(refused, 10, "the withdrawn document's file refused")
        assert "refused blob request" in caplog.text
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


class HostileParent:
    """A parent that serves what the test says for any blob: wrong bytes, too many, or the
    right ones cut after `cut` bytes on the first request (then honouring Range)."""

    def __init__(self, body: bytes, cut: int | None = None) -> None:
        self.body, self.cut = body, cut
        self.requests: list[str | None] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request.headers.get("Range"))
        ranged = request.headers.get("Range")
        if ranged:
            start = int(ranged.removeprefix("bytes=").rstrip("-"))
            return web.Response(body=self.body[start:], status=206)
        response = web.StreamResponse()
        response.content_length = len(self.body)
        await response.prepare(request)
        if self.cut is not None and len(self.requests) == 1:
            await response.write(self.body[:self.cut])
            assert request.transport is not None
            request.transport.close()  # the WAN link drops mid-file
            return response
        await response.write(self.body)
        return response


@asynccontextmanager
async def hostile(tmp_path: Path, parent: HostileParent) -> AsyncIterator[
        tuple[BlobFetcher, BlobStore]]:
    app = web.Application()
    app.router.add_get("/api/node/blobs/{sha}", parent.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    store = BlobStore(tmp_path / "store", durable=False)
    settings = NodeSettings("ward", parent_url=str(server.make_url("")), secret=WARD_SECRET)
    fetcher = BlobFetcher(store, settings, max_bytes=1 << 20, give_up_s=3)
    try:
        yield fetcher, store
    finally:
        await fetcher.close()
        await server.close()


async def test_a_file_that_is_not_the_one_announced_is_refused_and_nothing_is_stored(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    body = b"%PDF-1.7 " + bytes(range(256)) * 64
    digest = hashlib.sha256(body).hexdigest()
    wrong = b"%PDF-1.7 " + bytes(reversed(range(256))) * 64
    async with hostile(tmp_path / "a", HostileParent(wrong)) as (fetcher, store):
        with pytest.raises(BlobRefused):  # same size, other bytes
            await fetcher.fetch(digest, len(body))
        assert not store.exists(digest) and not list((store.root / "tmp").iterdir())
        assert not list((store.root / "blobs").rglob("*")), "nothing stored"
    async with hostile(tmp_path / "b", HostileParent(body + b"more")) as (fetcher, store):
        with pytest.raises(BlobRefused):  # more bytes than announced
            await fetcher.fetch(digest, len(body))
        assert not store.exists(digest) and not list((store.root / "tmp").iterdir())
    async with hostile(tmp_path / "c", HostileParent(body)) as (fetcher, store):
        with pytest.raises(BlobRefused):  # announced over the upload limit: not even asked
            await fetcher.fetch(digest, 1 << 30)
        with pytest.raises(ValueError):
            await fetcher.fetch("../../etc/passwd", 10)
        assert not store.exists(digest)
    assert caplog.text.count("nothing stored") >= 3

    # The link drops mid-file: the download resumes where it stopped (a Range request).
    parent = HostileParent(body, cut=4096)
    async with hostile(tmp_path / "d", parent) as (fetcher, store):
        path = await fetcher.fetch(digest, len(body))
        assert path.read_bytes() == body and parent.requests[0] is None
        assert parent.requests[-1] is not None and parent.requests[-1] != "bytes=0-"
        assert not list((store.root / "tmp").iterdir())
        # Several waiters, one download; a second fetch of what is here costs nothing.
        again = await asyncio.gather(*(fetcher.fetch(digest, len(body)) for _ in range(5)))
        assert set(again) == {path} and fetcher.fetched == [digest]


async def _stored(store: Any, digest: str) -> bool:
    return bool(store.exists(digest))


async def test_state_of_the_topic_is_registered_everywhere(tmp_path: Path) -> None:
    async with tree(tmp_path) as t:
        for h in t.nodes:
            assert state(h).topics.get("documents.changed", "down").apply is not None


async def exported(h: Harness, document_id: int) -> DocumentCascade | None:
    """The owner's row naming the files of its document that cross links."""
    async with h.server.app[keys.DB].session() as s:
        return await s.get(DocumentCascade, document_id)


async def test_page_1_is_served_at_every_width_and_as_its_thumbnail_by_no_worker_until_its_pdf(
        tmp_path: Path) -> None:
    """While its PDF is still crossing, a ward answers page 1 at any width a screen asks and
    as its thumbnail with the one image that crossed, at once: no worker is started for it
    (a resize to every width at all 16 nodes of the bench at once, 2 workers spawned at
    each, held the tablets' page 1 back by 10 s). Once the PDF is there, the ward processes
    it one job at a time, its pages behind any page a tablet asks for (PRIORITY_LOW), and
    the page is rendered from it at the width asked."""
    async with tree(tmp_path) as t:
        _, meeting_id, _, _, ward_id = await cascaded_meeting(t)
        data = with_photographs(make_pdf(tmp_path, pages=4), 3_000_000)
        async with within(40, "the upload processed at the province"):
            doc = await upload_ready(t.province, meeting_id, data, title="Tờ trình",
                                     publish=False)
        row = await until(lambda: exported(t.province, doc["id"]), 10, "the files exported")
        assert row.page1_sha256 is not None
        # The ward's PDF download is held back: only page 1 is there meanwhile.
        ward, arrived = fetcher(t.ward), asyncio.Event()
        fetch_blob = ward.fetch

        async def pdf_held(digest: str, size: int) -> Path:
            if digest == row.sha256:
                await arrived.wait()
            return await fetch_blob(digest, size)
        ward.fetch = pdf_held  # type: ignore[method-assign]
        async with within(10, "the ward delegate invited and logged in"):
            delegate = await member(t.ward, ward_id, "daibieu")
        secretary = await t.province.login("thuky")
        async with within(10, "the publication"):
            status, _ = await secretary.call("POST", f"/api/documents/{doc['id']}/publish",
                                             {"published": True})
        assert status == 200
        mirrored = await until(lambda: mirrored_doc(delegate, ward_id, "Tờ trình"), 20,
                               "page 1 current at the ward")
        page1 = t.ward.server.app[DOCUMENTS].store.path_for(row.page1_sha256).read_bytes()
        for path in ("pages/0?width=256", "pages/0?width=1280", "pages/0?width=2560",
                     "thumbs/0"):
            async with within(10, f"{path} at the ward"):
                status, kind, jpeg, headers = await fetch(
                    delegate, f"/api/documents/{mirrored['id']}/{path}")
            assert (status, kind, headers["Cache-Control"]) == (
                200, "image/jpeg", "private, no-cache"), path
            assert jpeg == page1, path
        assert not t.ward.server.app[DOCUMENTS].pool.started, "a worker ran for page 1"

        pool = t.ward.server.app[DOCUMENTS].pool
        run_job, running, most, priorities = pool.run, [0], [0], set()

        async def counted(func: Any, *args: Any, **kwargs: Any) -> Any:
            running[0] += 1
            most[0] = max(most[0], running[0])
            priorities.add(kwargs.get("priority", PRIORITY_NORMAL))
            try:
                return await run_job(func, *args, **kwargs)
            finally:
                running[0] -= 1
        pool.run = counted  # type: ignore[method-assign]
        arrived.set()

        async def processed() -> dict[str, Any] | None:
            _, body = await delegate.call("GET", f"/api/documents/{mirrored['id']}")
            return body if body["has_pdf"] else None
        await until(processed, 30, "the PDF processed at the ward")
        pool.run = run_job  # type: ignore[method-assign]
        assert most[0] == 1 and priorities == {PRIORITY_HIGH, PRIORITY_LOW}, (most, priorities)
        async with within(20, "page 1 rendered at 2560 px from the PDF"):
            status, _, jpeg, _ = await fetch(
                delegate, f"/api/documents/{mirrored['id']}/pages/0?width=2560")
        with Image.open(io.BytesIO(jpeg)) as img:
            assert status == 200 and img.width == 2560


async def test_a_child_asking_for_page_1_before_its_parent_applied_the_entry_is_not_refused(
        tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The city passes an entry on to the ward before applying it itself, so the ward may
    ask for page 1 while the city does not know the file yet: the request waits for the
    city's applier instead of being refused (then retried by the ward after 0.2, 0.4, 0.8,
    1.6, 2 s ...: 4 refusals and seconds lost at the city of the 15-ward bench)."""
    caplog.set_level(logging.INFO)
    async with tree(tmp_path) as t:
        _, meeting_id, _, _, ward_id = await cascaded_meeting(t)
        topics = state(t.city).topics
        topic = topics.get("documents.changed", "down")
        assert topic.apply is not None
        apply = topic.apply

        async def slow_apply(meeting: int, entry: Entry) -> None:
            await asyncio.sleep(2.0)  # the city's applier, behind other work
            await apply(meeting, entry)
        monkeypatch.setitem(topics._topics, topic.name,  # the slow step, in its place
                            dataclasses.replace(topic, apply=slow_apply))
        data = with_photographs(make_pdf(tmp_path, pages=4), 3_000_000)
        async with within(10, "the ward delegate invited and logged in"):
            delegate = await member(t.ward, ward_id, "daibieu")
        async with within(40, "the upload processed and published at the province"):
            await upload_ready(t.province, meeting_id, data, title="Tờ trình")
        await until(lambda: mirrored_doc(delegate, ward_id, "Tờ trình"), 20,
                    "page 1 current at the ward")
        assert "refused blob request" not in caplog.text
        fetched = [r.getMessage() for r in caplog.records
                   if r.name == "server.cascade.blobs" and "from the parent" in r.getMessage()]
        assert fetched and all("(1 attempts)" in m for m in fetched), fetched
