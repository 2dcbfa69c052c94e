"""Two Chromiums in one video meeting through a real Hopso server; JSON on the last line.

Run by test_video_browser.py inside `unshare -n` (loopback is the only interface), so the
server (a `run.py` child process) and both browsers can only ever use 127.0.0.1:
    python -m tests.e2e.video_interop <screenshot.png>
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
import time
from collections.abc import Iterable
from typing import Any

from playwright.sync_api import Page, sync_playwright

from testkit.browser import ARGS, CHROMIUM, session_page
from testkit.processes import ServerProcess, start_server

EXTRA_ARGS = ["--disable-features=WebRtcHideLocalIpsWithMdns",
              "--autoplay-policy=no-user-gesture-required"]
VIEWPORT = {"width": 1280, "height": 900}


def log_in(browser: Any, server: ServerProcess, username: str, path: str) -> Page:
    context = browser.new_context(viewport=VIEWPORT)
    page: Page = session_page(context, server.base, username, server.logins()[username], path)
    return page


def inbound(page: Page) -> list[dict[str, Any]]:
    return page.evaluate("hopsoVideo.inbound()")  # type: ignore[no-any-return]


def total(page: Page, kind: str, field: str) -> int:
    return sum(r[field] for r in inbound(page) if r["kind"] == kind)


def wait_until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def grown(pages: dict[str, Page], kind: str, field: str, first: dict[str, int], more: int,
          seconds: float) -> dict[str, list[int]]:
    """Per page [first, now]: as soon as each has more than `more` beyond `first`, else at
    `seconds` (what the test asks within that window: waiting it out added to the serial
    pass)."""
    deadline = time.monotonic() + seconds
    while True:
        now = {n: total(pg, kind, field) for n, pg in pages.items()}
        if all(now[n] > first[n] + more for n in pages) or time.monotonic() >= deadline:
            return {n: [first[n], now[n]] for n in pages}
        time.sleep(0.05)


def join_call(pages: Iterable[Page]) -> None:
    """Each page joins its meeting's call: camera/microphone preview, then the call."""
    for page in pages:
        page.wait_for_selector("#video-join:not([disabled])")
        page.click("#video-preview-start")
        wait_until(lambda page=page: page.evaluate(  # (wait_for_function needs eval: CSP)
            "document.querySelector('#video-preview').videoWidth > 0"), 10, "preview")
        page.click("#video-join")
    for page in pages:
        page.wait_for_selector("#video-room:not([hidden])")


def run(screenshot: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    server = start_server("--demo", "--data-dir", tempfile.mkdtemp(prefix="hopso-video-"),
                          env={"HOPSO_FAST_HASH": "1"})
    try:
        with sync_playwright() as p:
            browsers = [p.chromium.launch(executable_path=CHROMIUM, args=ARGS + EXTRA_ARGS,
                                          headless=True) for _ in range(2)]
            chair = log_in(browsers[0], server, "chutri", "/meetings")
            chair.click(".meeting-title")
            chair.wait_for_url(re.compile(r".*/meetings/\d+$"))
            path = chair.url.removeprefix(server.base)
            chair.click("button[data-action$='/open']")
            chair.wait_for_selector("#meeting-status.status-open")
            delegate = log_in(browsers[1], server, "daibieu", path)
            pages = {"chair": chair, "delegate": delegate}

            join_call(pages.values())

            # Each plays the other's camera: framesDecoded keeps increasing.
            for name, page in pages.items():
                wait_until(lambda page=page: total(page, "video", "frames") > 10, 20,
                           f"{name} decoding video")
            first = {n: total(pg, "video", "frames") for n, pg in pages.items()}
            out["frames"] = grown(pages, "video", "frames", first, 10, 1.5)
            out["playing"] = {n: pg.evaluate(
                "[...document.querySelectorAll('#video-tiles .tile:not([data-peer=\"' + "
                "hopsoVideo.joined.peer_id + '\"]) video')].map(v => [v.videoWidth, "
                "v.paused, v.readyState])") for n, pg in pages.items()}
            chair.wait_for_selector(".tile .quality.q-good", timeout=10000)
            chair.screenshot(path=screenshot, full_page=True)
            chair.locator("#video").screenshot(path=screenshot.replace(".png", "-chair.png"))

            # The chair mutes the delegate from the chair panel.
            delegate_id = delegate.evaluate("hopsoVideo.joined.me.user_id")
            wait_until(lambda: total(chair, "audio", "packets") > 50, 10, "chair hearing audio")
            before = total(chair, "audio", "packets")
            out["audio_before_mute"] = grown({"chair": chair}, "audio", "packets",
                                             {"chair": before}, 20, 1.0)["chair"]
            chair.click(f".video-person[data-user='{delegate_id}'] button[data-chair=mute]")
            delegate.wait_for_selector("#video-toggle-mic[aria-pressed=true]")
            time.sleep(0.8)  # packets in flight
            muted = total(chair, "audio", "packets")
            heard = total(delegate, "audio", "packets")
            time.sleep(2)
            out["audio_after_mute"] = [muted, total(chair, "audio", "packets")]
            out["delegate_still_hears"] = [heard, total(delegate, "audio", "packets")]
            out["delegate_mic_button"] = delegate.inner_text("#video-toggle-mic")
            out["chair_tile_badge"] = chair.inner_text(
                f".tile[data-peer='{delegate.evaluate('hopsoVideo.joined.peer_id')}'] .tile-mic")
            # The delegate's own attempts are refused: the button, and the server itself.
            delegate.click("#video-toggle-mic")
            delegate.wait_for_selector("#video-message.error")
            out["delegate_message"] = delegate.inner_text("#video-message")
            out["server_refusal"] = delegate.evaluate(
                "hopsoVideo.sig.unmute(hopsoVideo.mine.mic).then(() => 'accepted', e => e.code)")
            time.sleep(0.5)
            out["audio_after_attempt"] = total(chair, "audio", "packets")
            delegate.locator("#video").screenshot(
                path=screenshot.replace(".png", "-muted-delegate.png"))

            # The delegate shares a screen: the chair receives it as its own tile.
            delegate.click("#video-toggle-screen")
            wait_until(lambda: sum(r["frames"] for r in inbound(chair)
                                   if r["source"] == "screen") > 5, 15, "screen share frames")
            out["screen_tiles"] = chair.locator(".tile-screen").count()
            # The chair gives the delegate the floor: their camera is everyone's main view.
            chair.click(f".video-person[data-user='{delegate_id}'] button[data-chair=floor]")
            delegate_peer = delegate.evaluate("hopsoVideo.joined.peer_id")
            for page in pages.values():
                page.wait_for_selector(f".layout-speaker .tile.is-main[data-peer='{delegate_peer}']"
                                       "[data-source=camera] .tile-floor:not([hidden])")
            chair.locator("#video").screenshot(path=screenshot.replace(".png", "-floor.png"))
            delegate.click("#video-toggle-screen")  # stop sharing
            chair.wait_for_selector(".tile-screen", state="detached")
            out["screen_tiles_after"] = chair.locator(".tile-screen").count()

            out["candidates"] = {n: pg.evaluate("hopsoVideo.candidates()")
                                 for n, pg in pages.items()}
            out["errors"] = {n: pg.errors for n, pg in pages.items()}  # type: ignore[attr-defined]
            for browser in browsers:
                browser.close()
    finally:
        server.stop()
    return out


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1])))
