"""Chromium publishes its camera as simulcast (the web client's publish path, as
browser_simulcast.py) and a second Chromium page subscribes to it; the consumer's temporal
target is lowered to TID 1, then 0, and raised again. Printed as JSON on the last line.

Run by test_browser_simulcast.py inside `unshare -n` (loopback is the only interface):
    python -m tests.media.browser_temporal
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aioice.ice
from aiohttp import web
from playwright.async_api import Page, async_playwright

from media import SFU, MediaConfig, Peer
from testkit.browser import ARGS, CHROMIUM

from .browser_simulcast import PAGE, ROOT, producer_dict

SUBSCRIBER = """<!doctype html><html><body><script>
const gathered = (pc) => new Promise(r => {
  if (pc.iceGatheringState === "complete") return r();
  pc.addEventListener("icegatheringstatechange",
                      () => pc.iceGatheringState === "complete" && r());
});
window.pc = new RTCPeerConnection({bundlePolicy: "max-bundle", rtcpMuxPolicy: "require"});
pc.ontrack = (e) => {
  const el = document.createElement(e.track.kind);
  el.autoplay = true; el.muted = true; el.srcObject = new MediaStream([e.track]);
  document.body.appendChild(el); el.play().catch(() => {});
};
window.applyOffer = async (sdp) => {
  await pc.setRemoteDescription({type: "offer", sdp});
  await pc.setLocalDescription();
  await gathered(pc);
  return pc.localDescription.sdp;
};
window.video = async () => {
  let out = null;
  (await pc.getStats()).forEach((r) => {
    if (r.type === "inbound-rtp" && r.kind === "video")
      out = {frames: r.framesDecoded || 0, keyframes: r.keyFramesDecoded || 0,
             plis: r.pliCount || 0, firs: r.firCount || 0, nacks: r.nackCount || 0,
             lost: r.packetsLost || 0, freezes: r.freezeCount || 0,
             width: r.frameWidth || 0};
  });
  return out;
};
</script></body></html>"""

WINDOW_S = 4.0  # each temporal target is watched this long
SAMPLE_S = 0.25


async def watch(page: Page, seconds: float) -> dict[str, Any]:
    """Decoded frames over `seconds` (after a second to settle), sampled: fps, the longest
    stretch without a new frame, and what the subscriber's stats counted meanwhile."""
    await asyncio.sleep(1.0)
    first = await page.evaluate("video()")
    last, frames, gap, since = first, first["frames"], 0.0, time.monotonic()
    start = since
    while time.monotonic() - start < seconds:
        await asyncio.sleep(SAMPLE_S)
        last = await page.evaluate("video()")
        now = time.monotonic()
        if last["frames"] > frames:
            frames, since = last["frames"], now
        gap = max(gap, now - since)
    elapsed = time.monotonic() - start
    return {"fps": round((last["frames"] - first["frames"]) / elapsed, 2),
            "longest_gap_s": round(gap, 2),
            **{key: last[key] - first[key] for key in ("keyframes", "plis", "firs", "freezes")},
            "width": last["width"]}


async def run() -> dict[str, Any]:
    def loopback(use_ipv4: bool = True, use_ipv6: bool = True) -> list[str]:
        return ["127.0.0.1"]

    aioice.ice.get_host_addresses = loopback
    results: dict[str, Any] = {}
    sfu = SFU(MediaConfig(ice_addresses=("127.0.0.1",), ice_servers=()))
    router = sfu.router("meeting")
    alice: Peer = router.add_peer("alice")
    app = web.Application()

    async def page_html(request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    async def subscriber_html(request: web.Request) -> web.Response:
        return web.Response(text=SUBSCRIBER, content_type="text/html")

    app.router.add_get("/", page_html)
    app.router.add_get("/sub", subscriber_html)
    app.router.add_static("/js/", ROOT / "web_client" / "static" / "js")
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 8767).start()

    async def sfu_call(name: str, args: list[Any]) -> Any:
        if name == "join":
            return {"peer_id": "alice", "me": {"peer_id": "alice", "user_id": 1, "name": "A"},
                    "peers": [], "producers": [], "locks": [], "floor": None,
                    "active_speaker": None, "can_publish": True, "can_chair": False,
                    "rtc_configuration": {"iceServers": [], "bundlePolicy": "max-bundle",
                                          "rtcpMuxPolicy": "require"}}
        if name == "publish":
            result = await alice.publish(args[0], args[1])
            return {"sdp": result.sdp, "added": [producer_dict(p) for p in result.added],
                    "removed": result.removed}
        return {}

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = await browser.new_page()
        await page.expose_function("sfuCall", sfu_call)
        await page.goto("http://127.0.0.1:8767/")
        mine = await page.evaluate("startCall()")
        camera = router.get_producer(mine["camera"])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and camera.streams[0].packets_received < 50:
            await asyncio.sleep(0.2)

        carol = router.add_peer("carol")
        sub_page = await browser.new_page()
        await sub_page.goto("http://127.0.0.1:8767/sub")
        sub = await carol.subscribe(camera.id)
        assert sub.offer is not None
        await carol.set_answer(await sub_page.evaluate("s => applyOffer(s)", sub.offer.sdp))
        [consumer] = [c for c in carol.consumers if c.kind.value == "video"]
        carol.set_preferred_layers(consumer.id, 0)  # the low layer: light on a loaded box
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (
                consumer.current_layer != 0 or not (await sub_page.evaluate("video()"))):
            await asyncio.sleep(0.2)
        results["tids_seen"] = consumer.temporal_layers
        steps = []
        for temporal in (None, 1, 0, None):
            layers = carol.set_preferred_layers(consumer.id, 0, temporal)
            keyframes_in = camera.streams[0].keyframes_received
            requests = consumer.keyframe_requests_received
            watched = await watch(sub_page, WINDOW_S)
            watched.update(
                temporal=temporal, target=layers.target_temporal,
                current=consumer.current_temporal,
                publisher_keyframes=camera.streams[0].keyframes_received - keyframes_in,
                keyframe_requests=consumer.keyframe_requests_received - requests)
            steps.append(watched)
        results["steps"] = steps
        stats = consumer.stats()
        results["temporal_dropped"] = stats.temporal_dropped
        results["layer_switches"] = stats.layer_switches
        results["errors"] = await page.evaluate("window.errors")
        await browser.close()
    await runner.cleanup()
    await sfu.close()
    return results


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run())))
