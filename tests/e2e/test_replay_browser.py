"""Replay in a real Chromium (issue 16, item 3): a chair publishing real media (an aiortc
publisher: VP8 camera and Opus microphone through the SFU) records a short meeting in which
the agenda moves on and the presented page turns; a delegate opens the replay, jumps to the
second agenda item, and sees the video playing from there and the page that was presented
then (its pixels: each page of the document is a different colour).

No WebRTC in the browser (it only plays files over HTTP), so no network namespace is needed;
the publisher's ICE is restricted to loopback."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aioice.ice
import pymupdf
import pytest

from server.core.settings import MediaTimings
from testkit.aiortc_clients import EncodedMedia, encode_media
from testkit.browser import ARGS, CHROMIUM
from tests.conftest import Harness, start_harness
from tests.server.core.test_realtime import demo_meeting_id
from tests.server.documents_support import upload_ready
from tests.server.media_support import MediaClient, media_client

pytestmark = pytest.mark.browser
TIMINGS = MediaTimings(ice_timeout_s=3, rtcp_interval_s=0.5, stats_interval_s=0.5)
COLOURS = [(1.0, 0.0, 0.0), (0.0, 0.0, 1.0), (0.0, 0.6, 0.0)]  # page 0 red, 1 blue, 2 green
ITEMS = ("Khai mạc", "Báo cáo tài chính")
# What the replay page shows, read as a person sees it: the video's clock and state, and the
# colour in the middle of the page image as drawn.
SEEN = """() => {
  const v = document.getElementById('rp-video');
  const img = document.getElementById('rp-page');
  let rgb = null;
  if (!img.hidden && img.complete && img.naturalWidth > 0) {
    const c = document.createElement('canvas');
    c.width = 16; c.height = 16;
    const g = c.getContext('2d');
    g.drawImage(img, 0, 0, 16, 16);
    rgb = Array.from(g.getImageData(8, 8, 1, 1).data.slice(0, 3));
  }
  return {time: v.currentTime, paused: v.paused, ready: v.readyState, rgb,
          file: v.dataset.file || null};
}"""


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aioice.ice, "get_host_addresses",
                        lambda use_ipv4=True, use_ipv6=True: ["127.0.0.1"])


@pytest.fixture
async def hopso_media(tmp_path: Path) -> AsyncIterator[Harness]:
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} missing: the setup script must install chromium")
        pytest.skip(f"{CHROMIUM} is not installed")
    harness = await start_harness(tmp_path, None, media_timings=TIMINGS)
    yield harness
    await harness.close()
    await harness.server.close()


def coloured_pdf() -> bytes:
    doc = pymupdf.open()
    for colour in COLOURS:
        page = doc.new_page(width=595, height=842)
        page.draw_rect(page.rect, color=colour, fill=colour)
    data: bytes = doc.tobytes()
    doc.close()
    return data


def colour_of(rgb: list[int] | None) -> int | None:
    """Which page's colour a pixel is (JPEG: near enough), or None."""
    if rgb is None:
        return None
    for page, want in enumerate(COLOURS):
        if all(abs(c - w * 255) < 60 for c, w in zip(rgb, want)):
            return page
    return None


async def record(h: Harness, clients: list[MediaClient], media: EncodedMedia
                 ) -> tuple[int, list[int], dict[str, float]]:
    m = await demo_meeting_id(h)
    chair = await media_client(h, "chutri", m)
    clients.append(chair)
    assert (await chair.sio.call("meeting:join", {"meeting_id": m}, timeout=5))["ok"]
    status, _ = await chair.http.call("POST", f"/api/meetings/{m}/open")
    assert status == 200
    doc = await upload_ready(h, m, coloured_pdf(), filename="Màu.pdf")
    items = []
    for title in ITEMS:
        status, item = await chair.http.call("POST", f"/api/meetings/{m}/agenda", {"title": title})
        assert status == 201, item
        items.append(item["id"])

    async def present(page: int) -> None:
        ack = await chair.sio.call("present:update", {
            "document_id": doc["id"], "page": page, "zoom": 1.0, "scroll_x": 0.0,
            "scroll_y": 0.0}, timeout=10)
        assert ack["ok"], ack

    await chair.ok("media:join")
    await chair.publish(media)
    await chair.ok("agenda:set_current", item_id=items[0])
    await present(0)
    await chair.ok("recording:start")
    marks = {}
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await asyncio.sleep(1.5)  # the camera's first keyframe is in the file by then (1 s loop)
    await chair.ok("agenda:set_current", item_id=items[1])
    await present(1)
    marks["item"] = loop.time() - t0
    await asyncio.sleep(2.0)
    await present(2)
    marks["page2"] = loop.time() - t0
    await asyncio.sleep(1.0)
    await chair.ok("recording:stop")
    return m, items, marks


async def test_replay_jumps_to_an_agenda_item_and_shows_its_video_and_page(
        hopso_media: Harness, tmp_path: Path) -> None:
    h = hopso_media
    clients: list[MediaClient] = []
    try:
        m, items, marks = await record(h, clients, encode_media(seconds=1.0))
    finally:
        for client in clients:
            await client.close()

    delegate = await h.login("daibieu")  # the browser gets this session's cookie
    from playwright.async_api import async_playwright
    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=[*ARGS, "--autoplay-policy=no-user-gesture-required"])
        try:
            context = await browser.new_context(viewport={"width": 1280, "height": 800})
            await context.add_cookies([{"name": c.key, "value": c.value, "url": h.base}
                                       for c in delegate.session.cookie_jar])
            page = await context.new_page()
            await page.goto(f"{h.base}/meetings/{m}/replay")
            jump = page.locator(f"#rp-items li[data-key='item-{items[1]}'] button")
            await jump.wait_for()
            # At the start: the first page (red) and the video at 0, not playing yet.
            await page.wait_for_function(f"() => ({SEEN})().rgb !== null")
            before = await page.evaluate(SEEN)
            assert colour_of(before["rgb"]) == 0 and before["time"] < 0.5, before
            assert before["paused"] and before["file"], before

            await jump.click()
            # Playing from the item's moment: currentTime moved there and keeps moving.
            await page.wait_for_function(
                f"(after) => {{ const s = ({SEEN})(); return !s.paused && s.time > after"
                f" && s.ready >= 3; }}", arg=marks["item"] - 0.3, timeout=10_000)
            first = await page.evaluate(SEEN)
            await page.wait_for_timeout(600)
            later = await page.evaluate(SEEN)
            assert later["time"] > first["time"] + 0.2 and not later["paused"], (first, later)
            assert first["time"] < marks["item"] + 1.5, (first, marks)
            # The page shown is the one presented at the video's moment (what a person sees).
            await page.wait_for_function(f"() => ({SEEN})().rgb !== null")
            seen: dict[str, Any] = await page.evaluate(SEEN)
            expected = 1 if seen["time"] < marks["page2"] - 0.2 else 2
            assert colour_of(seen["rgb"]) == expected, (seen, marks)
            assert await page.locator("#rp-item").inner_text() == ITEMS[1]
        finally:
            await browser.close()
