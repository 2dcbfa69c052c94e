"""One harness for the media tests that drive Chromium against an in-process SFU
(tests/media/browser_*.py, tests/e2e/uplink_interop.py, weak_link_interop.py).

Such a harness runs in a loopback-only network namespace of its own (`run_harness`, from the
test) and prints its result as JSON on its last line. In it: an HTTP server of its pages on a
free loopback port (`page_server`: a secure context for getUserMedia, whatever the port),
Debian's Chromium with fake camera and microphone (`chromium`), and a publisher page running
the web client's own sending code (web_client/static/js/video-session.js: VideoSession, the
camera as simulcast) whose socket.io signaling is stood in for by a fake join and a publish
that reach the SFU directly through Playwright (`publisher_page`).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from playwright.async_api import Browser, Page, async_playwright

from media import Peer, Producer, PublishResult
from testkit.browser import ARGS, CHROMIUM
from testkit.netem import in_namespace, namespace_unavailable

ROOT = Path(__file__).resolve().parents[1]
JS_DIR = ROOT / "web_client" / "static" / "js"

# The publisher: VideoSession with a stand-in media signaling that calls `sfuCall` (exposed
# by publisher_page) where the server's socket.io would. startCall() publishes the fake
# camera at 720p (Chrome sends three simulcast layers from 540 lines; the meeting page asks
# 360p: two) and the microphone; it returns the producer ids ({camera, mic}).
PUBLISHER_PAGE = """<!doctype html><html><body><script type="module">
import { VideoSession } from "/js/video-session.js";
const call = (name, ...args) => window.sfuCall(name, args);
const sig = {
  connected: true,
  join: () => call("join"), publish: (sdp, sources) => call("publish", sdp, sources ?? null),
  leave: () => call("leave"), subscribe: async () => ({ consumers: [], offer: null }),
  answer: async () => ({ offer: null }), mute: async () => ({}), unmute: async () => ({}),
  producers: async () => ({ producers: [], peers: [] }), restartIce: async () => ({ offer: null }),
};
window.errors = [];
window.startCall = async () => {
  const s = new VideoSession(1, { connect: () => sig });
  s.onError = (e) => window.errors.push(String(e));
  s.local = await navigator.mediaDevices.getUserMedia({ audio: true,
    video: { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 20 } } });
  await s.join();
  window.session = s;
  return s.mine;
};
window.outbound = async () => {
  const out = [];
  (await window.session.sendPc.getStats()).forEach((r) => {
    if (r.type === "outbound-rtp" && r.kind === "video")
      out.push([r.rid, r.frameWidth || 0, r.framesEncoded || 0]);
  });
  return out.sort();
};
</script></body></html>"""

# A plain RTCPeerConnection's answering side (the page keeps it in window.pc): the SFU's
# offer in, the complete answer (candidates gathered) out.
ANSWER_JS = """
window.gathered = (pc) => new Promise(r => {
  if (pc.iceGatheringState === "complete") return r();
  pc.addEventListener("icegatheringstatechange",
                      () => pc.iceGatheringState === "complete" && r());
});
window.applyOffer = async (sdp) => {
  await pc.setRemoteDescription({type: "offer", sdp});
  await pc.setLocalDescription();
  await gathered(pc);
  return pc.localDescription.sdp;
};
"""


def producer_dict(info: Any) -> dict[str, Any]:
    """A producer as the server's socket.io answers name it to the web client."""
    return {"id": info.id, "peer_id": info.peer_id, "kind": info.kind.value,
            "source": info.source.value}


def join_answer(peer: Peer) -> dict[str, Any]:
    """The server's answer to media:join for `peer`, alone in the room, allowed to publish."""
    return {"peer_id": peer.id, "me": {"peer_id": peer.id, "user_id": 1, "name": "A"},
            "peers": [], "producers": [], "locks": [], "floor": None,
            "active_speaker": None, "can_publish": True, "can_chair": False,
            "rtc_configuration": {"iceServers": [], "bundlePolicy": "max-bundle",
                                  "rtcpMuxPolicy": "require"}}


@asynccontextmanager
async def page_server(pages: dict[str, str], port: int = 0) -> AsyncIterator[str]:
    """`pages` (path -> HTML) and the web client's JS under /js/, served on 127.0.0.1:`port`
    (0: a free one) while in the block; yields the base URL."""
    app = web.Application()
    for path, html in pages.items():
        async def handler(request: web.Request, html: str = html) -> web.Response:
            return web.Response(text=html, content_type="text/html")

        app.router.add_get(path, handler)
    app.router.add_static("/js/", JS_DIR)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def chromium(*extra_args: str) -> AsyncIterator[Browser]:
    """Headless Chromium with fake media devices (testkit/browser.py's ARGS, then
    `extra_args`), closed after the block."""
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                          args=[*ARGS, *extra_args])
        try:
            yield browser
        finally:
            await browser.close()


async def publisher_page(browser: Browser, peer: Peer, url: str,
                         on_publish: Callable[[PublishResult], None] | None = None) -> Page:
    """A new page of `browser` at `url` (serving PUBLISHER_PAGE) whose VideoSession signals
    as `peer`: its publish offers go to peer.publish, each result seen by `on_publish`.
    `await page.evaluate("startCall()")` then publishes."""
    page = await browser.new_page()

    async def sfu_call(name: str, args: list[Any]) -> Any:
        if name == "join":
            return join_answer(peer)
        if name == "publish":
            result = await peer.publish(args[0], args[1])
            if on_publish is not None:
                on_publish(result)
            return {"sdp": result.sdp, "added": [producer_dict(p) for p in result.added],
                    "removed": result.removed}
        return {}

    await page.expose_function("sfuCall", sfu_call)
    await page.goto(url)
    return page


async def wait_layers(producer: Producer, packets: int = 50, timeout: float = 20.0) -> None:
    """Until every simulcast layer of `producer` has received more than `packets` packets,
    or `timeout` seconds (the caller's assertions say which)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not all(
            s.packets_received > packets for s in producer.streams):
        await asyncio.sleep(0.2)


def run_harness(module: str, *args: str, timeout: float, what: str) -> dict[str, Any]:
    """`python -m module args` in a loopback-only network namespace of its own (tc and
    iptables there touch nothing else); its JSON result. Skipped where it cannot run, a
    failure in CI (`what` names the tests)."""
    reason = namespace_unavailable() or (None if os.path.exists(CHROMIUM)
                                         else f"{CHROMIUM} is not installed")
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run {what}: {reason}")
        pytest.skip(reason)
    run = subprocess.run(in_namespace([sys.executable, "-m", module, *args]), cwd=ROOT,
                         capture_output=True, text=True, timeout=timeout, check=False)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    result: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    return result
