"""Real Chromium subscribers on emulated weak links (testkit/netem.py), bandwidth allocation on
(issue 15 item 6); JSON on the last line.

Run by test_weak_link_browser.py in a loopback-only network namespace of its own
(testkit/chromium.py: its tc/iptables rules touch nothing else):
    python -m tests.e2e.weak_link_interop SCENARIO... [--twcc]

The scenarios (below) run one after another with one publisher, each with subscribers of its
own (the previous one's have left); each one's result is under its name. A scenario named
with `+twcc` (e.g. `drop+twcc`), or every one with `--twcc`, has its subscribers negotiate
transport-cc (MediaConfig.subscriber_transport_cc): the SFU numbers what it sends them and
estimates each downlink from their transport feedback (media/bwe.py) instead of taking their
REMB; the feedback counters are in the result. The tests run `both+twcc`.

A Chromium publisher sends its 720p fake camera as simulcast through the web client's own
publish path (testkit/chromium.py's publisher page: VideoSession, three layers). Each
subscriber is a Chromium page of its own answering the SFU's offers with a plain
RTCPeerConnection, playing the video in a <video> element; its link is named by the SFU's
port of its receiving transport (as a harness must for a browser) and shaped with HTB.
What is measured is what the browser decoded: getStats' framesDecoded and frame size every
50 ms, and the video element's requestVideoFrameCallback (frames presented).

* `weak`: "ward" on a 300 kbit/s link from the start, "strong" on a clean one.
* `drop`: "dropping" on a 2.5 Mbit/s link; once it is on the top layer, the link falls to
  300 kbit/s mid-call, then comes back.
* `both` (one climb to the top layer, ~35 s less than the two apart): `weak`, then the ward
  leaves and the strong subscriber, on the top layer, is `drop`'s subscriber: its clean link
  becomes 2.5 Mbit/s, then falls and comes back as there.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time
from dataclasses import dataclass, replace
from typing import Any

from playwright.async_api import Browser, Page

from media import SFU, Direction, MediaConfig, Peer, Router
from testkit.chromium import PUBLISHER_PAGE, chromium, page_server, publisher_page, wait_layers
from testkit.netem import Netem, Shape

WEAK_BPS, STRONG_BPS = 300_000, 2_500_000

SUB_PAGE = """<!doctype html><html><body><script>
window.samples = [];   // [t ms, framesDecoded, frameWidth, frameHeight, bytesReceived]
window.presented = []; // [t ms, width] per frame the <video> element presented
window.answerOffer = async (sdp) => {
  if (!window.pc) {
    const pc = window.pc = new RTCPeerConnection({ bundlePolicy: "max-bundle",
                                                   rtcpMuxPolicy: "require" });
    pc.ontrack = (e) => {
      if (e.track.kind !== "video") return;
      const v = document.createElement("video");
      v.muted = true; v.autoplay = true; v.playsInline = true;
      v.srcObject = new MediaStream([e.track]);
      document.body.appendChild(v);
      const onFrame = (now, meta) => {
        window.presented.push([performance.now(), meta.width]);
        v.requestVideoFrameCallback(onFrame);
      };
      v.requestVideoFrameCallback(onFrame);
      v.play().catch(() => {});
    };
    setInterval(async () => {
      const t = performance.now();
      (await pc.getStats()).forEach((r) => {
        if (r.type === "inbound-rtp" && r.kind === "video")
          window.samples.push([t, r.framesDecoded || 0, r.frameWidth || 0,
                               r.frameHeight || 0, r.bytesReceived || 0]);
      });
    }, 50);
  }
  await window.pc.setRemoteDescription({ type: "offer", sdp });
  await window.pc.setLocalDescription(await window.pc.createAnswer());
  return window.pc.localDescription.sdp;
};
window.now = () => performance.now();
</script></body></html>"""


class Viewer:
    """A Chromium subscriber page, its SFU peer and its link."""

    def __init__(self, name: str, page: Page, peer: Peer) -> None:
        self.name, self.page, self.peer = name, page, peer
        self.port = 0
        self.timeline: list[list[Any]] = []  # [t s, current layer, allocated, estimate kbps]

    async def subscribe(self, *producer_ids: str) -> None:
        sub = await self.peer.subscribe(*producer_ids)
        offer = sub.offer
        while offer is not None:
            answer = await self.page.evaluate("(sdp) => answerOffer(sdp)", offer.sdp)
            offer = await self.peer.set_answer(answer)

    def video_consumer(self) -> Any:
        return next(c for c in self.peer.consumers if c.kind.value == "video")

    def note(self, t: float) -> None:
        consumer = self.video_consumer()
        downlink = self.peer.downlink()
        estimate = None if downlink is None or downlink.estimate_bps is None \
            else round(downlink.estimate_bps / 1000)
        self.timeline.append([round(t, 2), consumer.current_layer, consumer.allocated_layer,
                              estimate])

    async def frames(self) -> int:
        samples = await self.page.evaluate("window.samples.slice(-1)")
        return int(samples[0][1]) if samples else 0


async def sampler(viewers: list[Viewer], t0: float) -> None:
    while True:
        for viewer in viewers:
            if not viewer.peer.closed:  # (after a failed wait the call is torn down)
                viewer.note(time.monotonic() - t0)
        await asyncio.sleep(0.25)


def freezes(times_ms: list[float], start_ms: float, end_ms: float) -> list[float]:
    """The gaps (ms) between frames over [start, end], its edges included."""
    edges = [start_ms, *[t for t in times_ms if start_ms <= t <= end_ms], end_ms]
    return [b - a for a, b in itertools.pairwise(edges)]


def longest_at(times_ms: list[float], start_ms: float, end_ms: float) -> float:
    """When (ms after start) the longest gap began."""
    edges = [start_ms, *[t for t in times_ms if start_ms <= t <= end_ms], end_ms]
    _, at = max((b - a, a) for a, b in itertools.pairwise(edges))
    return at - start_ms


async def measure(viewer: Viewer, start_ms: float, end_ms: float) -> dict[str, Any]:
    """What the browser decoded and presented between two of its performance.now() times."""
    samples: list[list[float]] = await viewer.page.evaluate("window.samples")
    presented: list[list[float]] = await viewer.page.evaluate("window.presented")
    window = [s for s in samples if start_ms <= s[0] <= end_ms]
    decoded_at = [b[0] for a, b in itertools.pairwise(samples)
                  if b[1] > a[1] and start_ms <= b[0] <= end_ms]  # a new frame decoded
    shown = [p[0] for p in presented]
    seconds = (end_ms - start_ms) / 1000
    widths = sorted({int(s[2]) for s in window if s[2]})
    frames = window[-1][1] - window[0][1] if len(window) > 1 else 0
    kbps = (window[-1][4] - window[0][4]) * 8 / seconds / 1000 if len(window) > 1 else 0.0
    return {
        "fps": round(frames / seconds, 1),
        "decoded_gap_max_ms": round(max(freezes(decoded_at, start_ms, end_ms))),
        "decoded_gap_max_at_ms": round(longest_at(decoded_at, start_ms, end_ms)),
        "decoded_gaps_over_500ms": sum(g > 500 for g in freezes(decoded_at, start_ms, end_ms)),
        "presented_gap_max_ms": round(max(freezes(shown, start_ms, end_ms))),
        "presented_fps": round(sum(start_ms <= t <= end_ms for t in shown) / seconds, 1),
        "widths": widths,
        "last_width": int(window[-1][2]) if window else 0,
        "kbps": round(kbps, 1),
    }


@dataclass
class Call:
    """What a scenario works with: the browser, the SFU's room, the links, the pages' URL."""

    browser: Browser
    router: Router
    netem: Netem
    url: str


async def publish(call: Call) -> Any:
    page = await publisher_page(call.browser, call.router.add_peer("alice"), call.url + "/")
    mine = await page.evaluate("startCall()")
    await wait_layers(call.router.get_producer(mine["camera"]))
    return mine


async def add_viewer(call: Call, name: str, ids: list[str], rate_bps: float | None) -> Viewer:
    context = await call.browser.new_context()
    page = await context.new_page()
    await page.goto(call.url + "/sub")
    viewer = Viewer(name, page, call.router.add_peer(name))
    await viewer.subscribe(*ids)
    deadline = time.monotonic() + 10
    while (transport := viewer.peer.transport(Direction.RECV)) is None \
            or transport.local_port is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"{name}: no receiving transport")
        await asyncio.sleep(0.05)
    viewer.port = transport.local_port
    if rate_bps is not None:
        call.netem.shape(viewer.port, Shape(rate_bps=rate_bps), server_side=True)
    return viewer


async def wait(check: Any, timeout: float, what: str) -> float:
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.25)
    return round(time.monotonic() - started, 1)


async def weak(call: Call, ids: list[str], out: dict[str, Any], viewers: list[Viewer]) -> float:
    """The ward and the strong subscriber; the timelines' t0 (monotonic) is returned."""
    strong = await add_viewer(call, "strong", ids, None)
    ward = await add_viewer(call, "ward", ids, WEAK_BPS)
    viewers += [strong, ward]
    t0 = time.monotonic()
    task = asyncio.ensure_future(sampler(viewers, t0))
    for v in viewers:
        await wait(lambda v=v: _frames_over(v, 10), 20, f"{v.name} decoding")
    # The strong one climbs to the top layer (one layer at a time, each after a hold).
    out["strong_top_after_s"] = await wait(
        lambda: _on_layer(strong, 2), 90, "the strong subscriber on the top layer")
    start = {v.name: await v.page.evaluate("now()") for v in viewers}
    m0 = time.monotonic() - t0
    await asyncio.sleep(15)
    m1 = time.monotonic() - t0
    end = {v.name: await v.page.evaluate("now()") for v in viewers}
    task.cancel()
    out["measured_s"] = [round(m0, 1), round(m1, 1)]
    out["viewers"] = {v.name: await measure(v, start[v.name], end[v.name]) for v in viewers}
    for v in viewers:
        layers = [row[1] for row in v.timeline if m0 <= row[0] <= m1]
        out["viewers"][v.name]["layers"] = sorted({x for x in layers if x is not None})
        out["viewers"][v.name]["top_share"] = round(
            sum(x == 2 for x in layers) / max(1, len(layers)), 2)
    return t0


async def drop(call: Call, ids: list[str], out: dict[str, Any], viewers: list[Viewer]) -> None:
    v = await add_viewer(call, "dropping", ids, STRONG_BPS)
    viewers.append(v)
    t0 = time.monotonic()
    task = asyncio.ensure_future(sampler([v], t0))
    await wait(lambda: _frames_over(v, 10), 20, "dropping decoding")
    out["top_after_s"] = await wait(lambda: _on_layer(v, 2), 60, "the top layer")
    try:
        await fall(v, call.netem, t0, out)
    finally:
        task.cancel()


async def weak_then_drop(call: Call, ids: list[str], out: dict[str, Any],
                         viewers: list[Viewer]) -> None:
    t0 = await weak(call, ids, out, viewers)
    ward, strong = (next(v for v in viewers if v.name == name) for name in ("ward", "strong"))
    await ward.peer.close()  # drop's subscriber is alone, as in `drop`
    await ward.page.context.close()
    call.netem.shape(strong.port, Shape(rate_bps=STRONG_BPS), server_side=True)
    task = asyncio.ensure_future(sampler([strong], t0))
    try:
        out["top_after_s"] = out["strong_top_after_s"] + await wait(
            lambda: _on_layer(strong, 2), 60, "the top layer on 2.5 Mbit/s")
        await fall(strong, call.netem, t0, out)
    finally:
        task.cancel()


async def fall(v: Viewer, netem: Netem, t0: float, out: dict[str, Any]) -> None:
    """`v`, on the top layer of its 2.5 Mbit/s link, sampled since t0: the link falls to
    300 kbit/s for 15 s and comes back."""
    await asyncio.sleep(3)
    before = await v.page.evaluate("now()")
    await asyncio.sleep(4)
    at = await v.page.evaluate("now()")
    drop_t = time.monotonic() - t0
    netem.change(v.port, rate_bps=WEAK_BPS)  # both directions, mid-call
    await asyncio.sleep(15)
    after = await v.page.evaluate("now()")
    up_t = time.monotonic() - t0
    netem.change(v.port, rate_bps=STRONG_BPS)
    try:
        out["back_on_top_after_s"] = await wait(lambda: _on_layer(v, 2), 40, "recovery")
    except AssertionError:
        out["back_on_top_after_s"] = None
    recovered = await v.page.evaluate("now()")
    out["drop_at_s"], out["restore_at_s"] = round(drop_t, 1), round(up_t, 1)
    out["before"] = await measure(v, before, at)
    out["after_drop"] = await measure(v, at, after)
    out["after_drop_last_5s"] = await measure(v, after - 5000, after)
    out["recovery"] = await measure(v, after, recovered)
    lowered = [row[0] for row in v.timeline if row[0] >= drop_t and row[1] is not None
               and row[1] < 2]
    out["adapt_down_s"] = round(lowered[0] - drop_t, 2) if lowered else None
    out["layers_after_drop"] = sorted({row[1] for row in v.timeline
                                       if drop_t + 5 <= row[0] <= up_t and row[1] is not None})


async def _frames_over(viewer: Viewer, count: int) -> bool:
    return await viewer.frames() > count


async def _on_layer(viewer: Viewer, layer: int) -> bool:
    return bool(viewer.video_consumer().current_layer == layer)


SCENARIOS = {"weak": weak, "drop": drop, "both": weak_then_drop}


async def scenario(call: Call, name: str, ids: list[str], twcc: bool) -> dict[str, Any]:
    """One scenario with subscribers of its own, who leave at its end; its result."""
    base = name.removesuffix("+twcc")
    twcc = twcc or base != name
    out: dict[str, Any] = {"scenario": base, "transport_cc": twcc}
    # Read by each peer when it is added (media/subscribing.py): this scenario's subscribers.
    call.router.config = replace(call.router.config, subscriber_transport_cc=twcc)
    viewers: list[Viewer] = []
    try:
        await SCENARIOS[base](call, ids, out, viewers)
    except AssertionError as exc:  # a wait that timed out: the figures so far
        out["error"] = str(exc)
    out["timeline"] = {v.name: v.timeline for v in viewers}
    out["publisher_kbps"] = [round((s.rate.bps or 0) / 1000)
                             for s in call.router.get_producer(ids[1]).streams]
    out["link_counters"] = call.netem.counters()
    out["downlink_stats"] = {v.name: vars(v.peer.downlink_stats()) for v in viewers}
    out["feedback_stats"] = {v.name: vars(v.peer.downlink_feedback_stats()) for v in viewers}
    for v in viewers:
        if not v.peer.closed:
            await v.peer.close()
            await v.page.context.close()
    return out


async def run(scenarios: list[str], twcc: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    netem = Netem()
    sfu = SFU(MediaConfig(ice_addresses=("127.0.0.1",), ice_servers=(),
                          bandwidth_allocation=True))
    try:
        async with page_server({"/": PUBLISHER_PAGE, "/sub": SUB_PAGE}) as url, chromium(
                "--autoplay-policy=no-user-gesture-required") as browser:
            call = Call(browser, sfu.router("meeting"), netem, url)
            mine = await publish(call)
            ids = [mine["mic"], mine["camera"]]
            for name in scenarios:
                out[name] = await scenario(call, name, ids, twcc)
    finally:
        await sfu.close()
        netem.close()
    return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run([a for a in sys.argv[1:] if a != "--twcc"],
                                     "--twcc" in sys.argv[1:]))))
