"""testkit/chromium.py's page server: the browser harnesses' pages and the web client's JS on
a free loopback port each (they once took fixed ports 8765-8768)."""

from __future__ import annotations

import aiohttp

from testkit.chromium import PUBLISHER_PAGE, page_server


async def test_two_page_servers_take_free_ports_and_serve_pages_and_the_clients_js() -> None:
    async with page_server({"/": PUBLISHER_PAGE, "/sub": "<p>sub</p>"}) as a, \
            page_server({"/": "<p>other</p>"}) as b, aiohttp.ClientSession() as http:
        assert a.startswith("http://127.0.0.1:") and a != b
        async with http.get(a + "/") as page:
            assert page.content_type == "text/html" and "startCall" in await page.text()
        async with http.get(a + "/sub") as page:
            assert await page.text() == "<p>sub</p>"
        async with http.get(b + "/") as page:
            assert await page.text() == "<p>other</p>"
        async with http.get(a + "/js/video-session.js") as script:  # what the publisher imports
            assert script.status == 200 and "VideoSession" in await script.text()
