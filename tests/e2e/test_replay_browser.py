"""Recording and replay in a real Chromium (issue 16): the chair starts the recording from the
meeting screen's button while a real publisher (an aiortc peer: VP8 camera and Opus microphone
through the SFU) is in the call; the chair's state bar, a delegate's documents page and the
projector all say "Đang ghi hình" in words until the chair stops it. Meanwhile the agenda
moves on and the presented page turns. A delegate then opens the replay, jumps to the second
agenda item, and sees the video playing from there and the page that was presented then (its
pixels: each page of the document is a different colour); then jumps to the delegate who had
the floor, and the video is theirs (a second real publisher), playing from that moment.

The browser does no WebRTC (it plays files over HTTP), so no network namespace is needed; the
publisher's ICE is restricted to loopback."""

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
from testkit.aiortc_clients import encode_media
from testkit.browser import ARGS, CHROMIUM
from tests.conftest import Harness, start_harness
from tests.server.core.test_realtime import demo_meeting_id
from tests.server.documents_support import upload_ready
from tests.server.media_support import MediaClient, media_client

pytestmark = pytest.mark.browser
AXE = Path(__file__).resolve().parents[2] / "web_client" / "node_modules" / "axe-core" / "axe.min.js"
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


async def prepare(h: Harness, chair: MediaClient, m: int) -> tuple[int, list[int]]:
    """An open meeting with two agenda items and a three-colour document."""
    assert (await chair.sio.call("meeting:join", {"meeting_id": m}, timeout=5))["ok"]
    status, _ = await chair.http.call("POST", f"/api/meetings/{m}/open")
    assert status == 200
    doc = await upload_ready(h, m, coloured_pdf(), filename="Màu.pdf")
    items = []
    for title in ITEMS:
        status, item = await chair.http.call("POST", f"/api/meetings/{m}/agenda", {"title": title})
        assert status == 201, item
        items.append(item["id"])
    return doc["id"], items


async def present(chair: MediaClient, doc: int, page: int) -> None:
    ack = await chair.sio.call("present:update", {
        "document_id": doc, "page": page, "zoom": 1.0, "scroll_x": 0.0, "scroll_y": 0.0},
        timeout=10)
    assert ack["ok"], ack


async def open_as(browser: Any, h: Harness, username: str, path: str, **options: Any) -> Any:
    client = await h.login(username)
    context = await browser.new_context(viewport={"width": 1280, "height": 800}, **options)
    await context.add_cookies([{"name": c.key, "value": c.value, "url": h.base}
                               for c in client.session.cookie_jar])
    page = await context.new_page()
    await page.goto(h.base + path)
    return page


async def test_everyone_sees_the_recording_and_replay_jumps_to_an_agenda_item(
        hopso_media: Harness, tmp_path: Path) -> None:
    h = hopso_media
    m = await demo_meeting_id(h)
    chair = await media_client(h, "chutri", m)
    delegate = await media_client(h, "daibieu", m)
    from playwright.async_api import async_playwright

    async def meeting_with_media() -> tuple[int, list[int]]:
        doc, items = await prepare(h, chair, m)
        await chair.ok("media:join")
        await chair.publish(encode_media(seconds=1.0))  # a 1 s loop: a keyframe every second
        await chair.ok("agenda:set_current", item_id=items[0])
        await present(chair, doc, 0)
        # A delegate in the call too, checked in so that they may ask for the floor.
        assert (await delegate.sio.call("meeting:join", {"meeting_id": m}, timeout=5))["ok"]
        await delegate.ok("attendance:check_in", mode="online")
        await delegate.ok("media:join")
        await delegate.publish(encode_media(seconds=1.0))
        return doc, items

    async def screens(browser: Any) -> list[Any]:
        # Every screen of the meeting: the chair's meeting screen (its state bar and the
        # start button), a delegate's documents page, the secretary's projector.
        await opened.wait()
        return list(await asyncio.gather(
            open_as(browser, h, "chutri", f"/meetings/{m}"),
            open_as(browser, h, "daibieu", f"/meetings/{m}/documents"),
            open_as(browser, h, "thuky", f"/meetings/{m}/projector")))

    opened = asyncio.Event()
    try:
        async with async_playwright() as p:
            launching = asyncio.ensure_future(p.chromium.launch(
                executable_path=CHROMIUM, headless=True,
                args=[*ARGS, "--autoplay-policy=no-user-gesture-required"]))
            preparing = asyncio.ensure_future(meeting_with_media())
            browser = await launching
            try:
                pages = asyncio.ensure_future(screens(browser))
                await asyncio.sleep(0)
                await asyncio.wait_for(_opened(h, chair, m, opened), 30)
                doc, items = await preparing
                await record_and_replay(h, browser, (chair, delegate), m, doc, items,
                                        await pages)
            finally:
                preparing.cancel()
                await browser.close()
    finally:
        await chair.close()
        await delegate.close()


async def _opened(h: Harness, chair: MediaClient, m: int, opened: asyncio.Event) -> None:
    """The meeting is open (the screens show its open state, the chair's button with it)."""
    while True:
        status, meeting = await chair.http.call("GET", f"/api/meetings/{m}")
        if status == 200 and meeting["status"] == "open":
            opened.set()
            return
        await asyncio.sleep(0.05)


async def record_and_replay(h: Harness, browser: Any, people: tuple[MediaClient, MediaClient],
                            m: int, doc: int, items: list[int], pages: list[Any]) -> None:
    chair, delegate = people
    console, reader, projector = pages
    badges = ((console, "#rec-badge"), (reader, "#docs-rec-badge"), (projector, "#pj-rec"))
    toggle = console.locator("#rec-toggle")
    await toggle.filter(has_text="Bắt đầu ghi hình").wait_for()
    await console.wait_for_selector("#live-state:has-text('Trực tuyến')")
    await toggle.click()
    for page, badge in badges:  # words, not a colour alone
        await page.wait_for_selector(f"{badge}:has-text('Đang ghi hình')", state="visible")
    await asyncio.sleep(1.5)  # the camera's first keyframe is in the file by then
    await chair.ok("agenda:set_current", item_id=items[1])
    await present(chair, doc, 1)
    await asyncio.sleep(1.5)
    asked = await delegate.ok("floor:request")
    await chair.ok("floor:grant", request_id=asked["request_id"])
    await asyncio.sleep(1.0)
    await present(chair, doc, 2)
    await asyncio.sleep(1.0)
    await toggle.filter(has_text="Dừng ghi hình").click()
    for page, badge in badges:
        await page.wait_for_selector(badge, state="hidden")
    for page in pages:
        await page.context.close()

    member = await h.login("daibieu")
    status, listed = await member.call("GET", f"/api/meetings/{m}/recordings")
    assert status == 200 and len(listed["recordings"]) == 1
    status, timeline = await member.call(
        "GET", f"/api/meetings/{m}/recordings/{listed['recordings'][0]['id']}/timeline")
    assert status == 200
    at = {(e["kind"], e["data"].get("item_id", e["data"].get("page"))): e["offset_ms"] / 1000
          for e in timeline["entries"]}
    item_s, page2_s = at[("agenda", items[1])], at[("presented", 2)]
    floor_s = next(e["offset_ms"] for e in timeline["entries"] if e["kind"] == "floor") / 1000
    cameras = {t["user_id"]: t["file"] for t in timeline["tracks"] if t["kind"] == "video"}
    assert len(cameras) == 2, timeline["tracks"]

    page = await open_as(browser, h, "daibieu", f"/meetings/{m}/replay")
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
        f"(after) => {{ const s = ({SEEN})(); return !s.paused && s.time >= after"
        f" && s.ready >= 3; }}", arg=item_s - 0.05, timeout=10_000)
    first = await page.evaluate(SEEN)
    await page.wait_for_timeout(600)
    later = await page.evaluate(SEEN)
    assert later["time"] > first["time"] + 0.2 and not later["paused"], (first, later)
    assert first["time"] < item_s + 1.5, (first, item_s)
    # The page shown is the one presented at the video's moment (what a person sees).
    await page.wait_for_function(f"() => ({SEEN})().rgb !== null")
    seen: dict[str, Any] = await page.evaluate(SEEN)
    expected = 1 if seen["time"] < page2_s - 0.2 else 2
    assert colour_of(seen["rgb"]) == expected, (seen, item_s, page2_s)
    assert await page.locator("#rp-item").inner_text() == ITEMS[1]

    # Jump to the speaker: the video is theirs, playing from when they got the floor.
    await page.locator("#rp-speakers li button").click()
    await page.wait_for_function(
        f"([after, file]) => {{ const s = ({SEEN})(); return !s.paused && s.time >= after"
        f" && s.file === file && s.ready >= 3; }}",
        arg=[floor_s - 0.05, cameras[delegate.http.user["id"]]], timeout=10_000)
    assert "Lê Minh Tuấn" in await page.locator("#rp-speaker").inner_text()

    # WCAG 2.1 A/AA (axe-core, as tests/e2e/test_a11y_browser.py): no serious violation on the
    # replay page. axe is injected inline: only this context bypasses the CSP.
    checked = await open_as(browser, h, "daibieu", f"/meetings/{m}/replay", bypass_csp=True)
    await checked.locator(f"#rp-items li[data-key='item-{items[1]}'] button").wait_for()
    await checked.add_script_tag(path=str(AXE))
    violations = await checked.evaluate(
        "async () => (await axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', "
        "'wcag2aa', 'wcag21a', 'wcag21aa']}, resultTypes: ['violations']})).violations")
    assert [(v["id"], [n["target"] for n in v["nodes"]][:3]) for v in violations
            if v["impact"] in ("serious", "critical")] == []
