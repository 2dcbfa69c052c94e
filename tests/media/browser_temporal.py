"""The temporal part of browser_simulcast.py's run: a second Chromium page subscribes to the
simulcast camera Chromium publishes there; its consumer, on the low layer, has its temporal
target lowered to TID 1, then 0, and raised again (test_browser_simulcast.py):
    python -m tests.media.browser_simulcast temporal
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from playwright.async_api import Browser, Page

from media import Producer, Router
from testkit.chromium import ANSWER_JS

SUBSCRIBER = """<!doctype html><html><body><script>""" + ANSWER_JS + """
window.pc = new RTCPeerConnection({bundlePolicy: "max-bundle", rtcpMuxPolicy: "require"});
pc.ontrack = (e) => {
  const el = document.createElement(e.track.kind);
  el.autoplay = true; el.muted = true; el.srcObject = new MediaStream([e.track]);
  document.body.appendChild(el); el.play().catch(() => {});
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


async def temporal_steps(browser: Browser, router: Router, publisher: Page, camera: Producer,
                         url: str) -> dict[str, Any]:
    """Carol's page (at `url`, serving SUBSCRIBER) on `camera`'s low layer: each temporal
    target watched for WINDOW_S; the publisher page's errors at the end."""
    results: dict[str, Any] = {}
    carol = router.add_peer("carol")
    sub_page = await browser.new_page()
    await sub_page.goto(url)
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
    results["errors"] = await publisher.evaluate("window.errors")
    await sub_page.close()
    return results
