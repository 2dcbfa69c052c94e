"""testkit/cascade_documents.py's first-page measure: a tablet that follows its live channel
asks for page 1 when a push says the document is ready, as the web client does, instead of
polling its node (101 tablets polling every 50 ms had kept the 15-ward bench's 2 cores busy)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from testkit.cascade_documents import Tablet, first_page_everywhere

TITLE = "Tờ trình"
JPEG = b"\xff\xd8\xff\xe0" + b"\0" * 64


@asynccontextmanager
async def node(ready_after: float) -> AsyncIterator[tuple[str, Counter[str]]]:
    """A node whose document is listed ready, and its page 1 real, `ready_after` s from now;
    the requests it answered, by route."""
    asked: Counter[str] = Counter()
    ready_at = time.monotonic() + ready_after

    async def documents(request: web.Request) -> web.Response:
        asked["list"] += 1
        status = "ready" if time.monotonic() >= ready_at else "processing"
        etag = f'"{status}"'
        if request.headers.get("If-None-Match") == etag:
            asked["list unchanged"] += 1
            return web.Response(status=304, headers={"ETag": etag})
        return web.json_response({"groups": [{"documents": [
            {"id": 7, "title": TITLE, "status": status, "confidential": False}]}]},
            headers={"ETag": etag, "Cache-Control": "private, no-cache"})

    async def page(_request: web.Request) -> web.Response:
        asked["page"] += 1
        real = time.monotonic() >= ready_at
        return web.Response(body=JPEG, content_type="image/jpeg",
                            headers={"Cache-Control": "private, no-cache" if real else "no-store"})

    app = web.Application()
    app.router.add_get("/api/meetings/1/documents", documents)
    app.router.add_get("/api/documents/7/pages/0", page)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/"), asked
    finally:
        await server.close()


class Pushes:
    """A live channel that receives one `document:updated` (ready) at `at`."""

    def __init__(self, at: float) -> None:
        self.at = at

    async def wait_for(self, event: str, match: Callable[[Any], bool], timeout: float,
                       since: float = 0.0) -> tuple[float, Any]:
        data = {"id": 7, "title": TITLE, "status": "ready", "confidential": False}
        if event == "document:updated" and self.at >= since and match(data):
            await asyncio.sleep(max(0.0, self.at - time.monotonic()))
            return self.at, data
        await asyncio.sleep(timeout)
        raise AssertionError(f"{event} not seen within {timeout} s")


async def test_a_tablet_following_its_pushes_asks_for_page_1_once_it_is_pushed_ready() -> None:
    async with node(ready_after=0.3) as (base, asked), aiohttp.ClientSession() as session:
        started = time.monotonic()
        tablet = Tablet(session, base, 1, pushes=Pushes(started + 0.3))
        [took] = await first_page_everywhere([tablet], TITLE, started, timeout=5)
    assert 0.3 <= took < 1.0
    assert asked == {"page": 1}, asked  # no list polled, page 1 asked once


async def test_a_polling_tablet_polls_its_list_until_page_1_is_real() -> None:
    async with node(ready_after=0.3) as (base, asked), aiohttp.ClientSession() as session:
        started = time.monotonic()
        [took] = await first_page_everywhere([Tablet(session, base, 1)], TITLE, started,
                                             timeout=5, interval=0.05)
    assert 0.3 <= took < 1.0
    assert asked["list"] >= 4 and asked["page"] >= 1, asked
    # Asked again with the ETag of the list it holds, as a browser does: answered 304
    # until the document is ready (at most two lists sent: processing, then ready).
    assert asked["list unchanged"] >= asked["list"] - 2, asked
