"""Chromium publishes its camera through the web client's own publish path as simulcast;
printed as JSON on the last line.

Run by test_browser_simulcast.py inside `unshare -n` (loopback is the only interface):
    python -m tests.media.browser_simulcast
The page runs web_client/static/js/video-session.js (`VideoSession`, the sending code the
meeting page uses: camera with CAMERA_ENCODINGS) with a stand-in media signaling that calls
the SFU through Playwright, where the server's socket.io would.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aioice.ice
from aiohttp import web
from playwright.async_api import async_playwright

from media import SFU, MediaConfig, Peer
from testkit.aiortc_clients import Subscriber
from testkit.browser import ARGS, CHROMIUM
from testkit.media_config import bandwidth_allocation

ROOT = Path(__file__).resolve().parents[2]
PAGE = """<!doctype html><html><body><script type="module">
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
  // 720p: Chrome sends three layers from 540 lines (the meeting page asks 360p: two layers).
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


def producer_dict(info: Any) -> dict[str, Any]:
    return {"id": info.id, "peer_id": info.peer_id, "kind": info.kind.value,
            "source": info.source.value}


async def run() -> dict[str, Any]:
    # The aiortc subscriber gathers on loopback (aioice skips it otherwise), as conftest.py.
    def loopback(use_ipv4: bool = True, use_ipv6: bool = True) -> list[str]:
        return ["127.0.0.1"]

    aioice.ice.get_host_addresses = loopback
    results: dict[str, Any] = {}
    sfu = SFU(MediaConfig(ice_addresses=("127.0.0.1",), ice_servers=(),
                      bandwidth_allocation=bandwidth_allocation()))
    router = sfu.router("meeting")
    alice: Peer = router.add_peer("alice")
    app = web.Application()
    async def page_html(request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    app.router.add_get("/", page_html)
    app.router.add_static("/js/", ROOT / "web_client" / "static" / "js")
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 8766).start()  # a secure context for gUM

    async def sfu_call(name: str, args: list[Any]) -> Any:
        if name == "join":
            return {"peer_id": "alice", "me": {"peer_id": "alice", "user_id": 1, "name": "A"},
                    "peers": [], "producers": [], "locks": [], "floor": None,
                    "active_speaker": None, "can_publish": True, "can_chair": False,
                    "rtc_configuration": {"iceServers": [], "bundlePolicy": "max-bundle",
                                          "rtcpMuxPolicy": "require"}}
        if name == "publish":
            result = await alice.publish(args[0], args[1])
            results.setdefault("answers", []).append(result.sdp)
            return {"sdp": result.sdp, "added": [producer_dict(p) for p in result.added],
                    "removed": result.removed}
        return {}

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = await browser.new_page()
        await page.expose_function("sfuCall", sfu_call)
        await page.goto("http://127.0.0.1:8766/")
        mine = await page.evaluate("startCall()")
        camera = router.get_producer(mine["camera"])
        results["simulcast"] = camera.simulcast
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not all(
                s.packets_received > 50 for s in camera.streams):
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)
        results["layers"] = [{"rid": s.rid, "bound": s.ssrc is not None,
                              "packets": s.packets_received, "keyframes": s.keyframes_received,
                              "rtx_bound": s.rtx_ssrc is not None}
                             for s in camera.streams]
        stats = camera.stats()
        results["faults"] = [stats.unknown_rid_packets, stats.unbound_packets,
                             stats.ssrc_changes]
        results["outbound"] = await page.evaluate("outbound()")
        # An aiortc subscriber decodes the camera, moved from the top layer to the lowest.
        bob = router.add_peer("bob")
        sub = Subscriber(bob)
        await sub.subscribe(camera.id)
        [consumer] = bob.consumers
        await asyncio.sleep(3)
        [track] = [t for t in sub.tracks if t.kind == "video"]
        # With bandwidth allocation on, the consumer starts on the low layer and climbs as
        # the subscriber's REMB does (docs/media.md, "Bandwidth allocation"): wait for the
        # climb (none without it: met at once).
        climb = time.monotonic()
        while time.monotonic() - climb < 45 and not (
                consumer.current_layer == 2 and track.frames > 10 and (1280, 720) in track.sizes):
            await asyncio.sleep(0.2)
        results["climb_s"] = round(time.monotonic() - climb, 1)
        results["top"] = [consumer.current_layer, track.frames, sorted(track.sizes)]
        bob.set_preferred_layers(consumer.id, 0)
        track.sizes.clear()
        before = track.frames
        await asyncio.sleep(3)
        results["low"] = [consumer.current_layer, track.frames - before, sorted(track.sizes)]
        results["errors"] = await page.evaluate("window.errors")
        await sub.close()
        await browser.close()
    await runner.cleanup()
    await sfu.close()
    results.pop("answers")
    return results


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run())))
