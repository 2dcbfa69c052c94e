"""A Chromium publisher on a 500 kbit/s uplink (issue 15 item 3): what its own sender does with
our feedback; JSON on the last line.

Run by test_uplink_browser.py in a loopback-only network namespace of its own
(testkit/chromium.py: its tc/iptables rules touch nothing else):
    python -m tests.e2e.uplink_interop twcc|remb [seconds]

Chromium publishes its 720p fake camera as simulcast (three layers) through the web client's
own publish path (testkit/chromium.py's publisher page). What reaches the SFU's port of its
send transport is shaped to 500 kbit/s (HTB, a 200 ms drop-tail queue: testkit/netem.py) from
the answer on. `twcc`: the server answers transport-cc (MediaConfig.transport_cc, the default)
and sends transport-wide feedback; `remb`: it does not (the REMB cap and our receiver reports'
loss only, as before). Every 0.5 s the publisher's getStats: per layer (rid) bytes sent, frame
size, qualityLimitationReason; the transport's availableOutgoingBitrate (its estimate). An
aiortc subscriber decodes the camera at the layer the SFU gives it (no allocation: the top
layer the publisher still sends, else the nearest below), recovering from a hole as a browser
does (testkit.weak_links.MeasuredSubscriber.recover_like_a_browser): plain aiortc holds every
frame behind one packet that never comes (lost upstream, or of a layer the SFU left) until its
jitter buffer overflows, a freeze of 10 s under a busy core, which no browser shows.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time
from typing import Any

from media import SFU, Direction, MediaConfig, PublishResult
from testkit.chromium import PUBLISHER_PAGE, chromium, page_server, publisher_page
from testkit.ice import gather_only_on
from testkit.netem import Netem, Shape
from testkit.weak_links import MeasuredSubscriber

UPLINK_BPS = 500_000

STATS = """async () => {
  const out = { t: performance.now(), layers: {}, estimate: null };
  (await window.session.sendPc.getStats()).forEach((r) => {
    if (r.type === "outbound-rtp" && r.kind === "video")
      out.layers[r.rid || "-"] = [r.bytesSent || 0, r.frameWidth || 0,
                                  r.qualityLimitationReason || "", r.framesEncoded || 0];
    if (r.type === "candidate-pair" && r.nominated && r.availableOutgoingBitrate)
      out.estimate = r.availableOutgoingBitrate;
  });
  return out;
}"""


def rates(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per sample after the first: kbit/s sent per layer and in all since the previous one."""
    out = []
    for a, b in itertools.pairwise(samples):
        seconds = (b["t"] - a["t"]) / 1000
        per = {rid: round((b["layers"][rid][0] - a["layers"].get(rid, [0])[0]) * 8 / seconds
                          / 1000, 1) for rid in b["layers"]}
        out.append({"t": round(b["at"], 2), "kbps": round(sum(per.values()), 1), "layers": per,
                    "widths": {rid: v[1] for rid, v in b["layers"].items()},
                    "limit": sorted({v[2] for v in b["layers"].values()}),
                    "estimate_kbps": None if b["estimate"] is None
                    else round(b["estimate"] / 1000)})
    return out


async def run(mode: str, seconds: float) -> dict[str, Any]:
    gather_only_on("127.0.0.1")  # the aiortc subscriber gathers on loopback
    out: dict[str, Any] = {"mode": mode, "uplink_kbps": UPLINK_BPS / 1000}
    netem = Netem()
    sfu = SFU(MediaConfig(ice_addresses=("127.0.0.1",), ice_servers=(),
                          transport_cc=mode == "twcc"))
    router = sfu.router("meeting")
    alice = router.add_peer("alice")
    t0 = time.monotonic()
    shaped: list[int] = []
    tasks: list[asyncio.Future[None]] = []

    async def shape_when_connected() -> None:
        """The uplink: what reaches the server's port of the send transport (server_side:
        "up" is what goes to it), shaped as soon as ICE has chosen that port."""
        while (transport := alice.transport(Direction.SEND)) is None \
                or transport.local_port is None:
            await asyncio.sleep(0.01)
        netem.shape(transport.local_port, up=Shape(rate_bps=UPLINK_BPS), server_side=True)
        shaped.append(transport.local_port)
        out["shaped_at_s"] = round(time.monotonic() - t0, 2)

    def on_publish(result: PublishResult) -> None:
        out["answer_has_transport_cc"] = "transport-cc" in result.sdp
        if not shaped:
            shaped.append(0)
            tasks.append(asyncio.ensure_future(shape_when_connected()))

    try:
        async with page_server({"/": PUBLISHER_PAGE}) as url, chromium() as browser:
            page = await publisher_page(browser, alice, url + "/", on_publish)
            t0 = time.monotonic()  # times are since the call started (the closure sees it)
            mine = await page.evaluate("startCall()")
            camera = router.get_producer(mine["camera"])
            sub = MeasuredSubscriber(router.add_peer("bob"))
            await sub.subscribe(camera.id)
            tasks.append(asyncio.ensure_future(sub.recover_like_a_browser()))
            samples: list[dict[str, Any]] = []
            frames: list[tuple[float, int]] = []
            drops: list[tuple[float, int, int]] = []  # (at, packets, dropped) at the bottleneck
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                sample = await page.evaluate(STATS)
                sample["at"] = time.monotonic() - t0
                samples.append(sample)
                tracks = [t for t in sub.tracks if t.kind == "video"]
                frames.append((sample["at"], tracks[0].frames if tracks else 0))
                if "shaped_at_s" in out:
                    [link] = (await asyncio.to_thread(netem.counters)).values()
                    drops.append((sample["at"], link.get("packets", 0), link.get("dropped", 0)))
                await asyncio.sleep(0.5)
            timeline = rates(samples)
            out["timeline"] = timeline
            out["frames"] = frames
            # Settled: from when on every 2 s average of what is sent stays under the link.
            settled = None
            for i in range(len(timeline)):
                window = [timeline[j]["kbps"] for j in range(i, len(timeline))]
                averages = [sum(window[k:k + 4]) / len(window[k:k + 4])
                            for k in range(len(window))]
                if max(averages) <= UPLINK_BPS / 1000:
                    settled = timeline[i]["t"]
                    break
            out["settled_at_s"] = settled
            last = [r for r in timeline if r["t"] >= timeline[-1]["t"] - 10]
            out["last_10s_kbps"] = round(sum(r["kbps"] for r in last) / max(1, len(last)), 1)
            out["last_10s_layers_kbps"] = {
                rid: round(sum(r["layers"].get(rid, 0) for r in last) / max(1, len(last)), 1)
                for rid in timeline[-1]["layers"]}
            out["last_estimate_kbps"] = timeline[-1]["estimate_kbps"]
            out["last_limit"] = timeline[-1]["limit"]
            out["last_10s_frames"] = frames[-1][1] - next(
                f for t, f in frames if t >= frames[-1][0] - 10)
            out["subscriber_layer"] = next(
                (c.current_layer for c in router.get_producer(camera.id).consumers), None)
            out["link_counters"] = netem.counters()
            # What the queue dropped over the last 10 s, when the sender has long adapted (the
            # ramp into the freshly shaped link, Chromium's own probing, is in link_counters).
            out["drops"] = drops
            if drops:
                _, packets0, dropped0 = next(d for d in drops if d[0] >= drops[-1][0] - 10)
                _, packets1, dropped1 = drops[-1]
                sent = (packets1 - packets0) + (dropped1 - dropped0)
                out["last_10s_dropped"] = round((dropped1 - dropped0) / max(1, sent), 4)
            out["holes_skipped"], out["keyframe_skips"] = sub.gaps_skipped, sub.keyframe_skips
            out["errors"] = await page.evaluate("window.errors")
            await sub.close()
    finally:
        for task in tasks:
            task.cancel()
        await sfu.close()
        netem.close()
    return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2
                                     else 30.0))))
