"""Chromium <-> SFU interop run, printed as JSON on the last line.

Run by test_browser.py in a loopback-only network namespace (testkit/chromium.py):
    python -m tests.media.browser_interop
Chromium uses fake camera/mic; pages talk to the SFU through Playwright,
standing in for the server's socket.io signaling.
"""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

from aiortc.sdp import SessionDescription
from playwright.async_api import Page

from media import SFU, MediaConfig, MediaEvent
from testkit.chromium import ANSWER_JS, chromium, page_server
from testkit.media_config import bandwidth_allocation

# The JS a browser client runs (see docs/media.md for the full flow).
CLIENT_JS = ANSWER_JS + r"""
window.publishOffer = async () => {
  window.pc = new RTCPeerConnection({bundlePolicy: "max-bundle", rtcpMuxPolicy: "require"});
  const s = await navigator.mediaDevices.getUserMedia(
    {audio: true, video: {width: 320, height: 240}});
  for (const t of s.getTracks()) pc.addTransceiver(t, {direction: "sendonly", streams: [s]});
  await pc.setLocalDescription();
  await gathered(pc);
  return pc.localDescription.sdp;
};
window.addScreen = async () => {
  const canvas = document.createElement("canvas"); canvas.width = 320; canvas.height = 180;
  const ctx = canvas.getContext("2d"); let i = 0;
  setInterval(() => { ctx.fillStyle = `hsl(${i++ % 360},80%,50%)`;
                      ctx.fillRect(0, 0, 320, 180); }, 50);
  const tr = pc.addTransceiver(canvas.captureStream(15).getVideoTracks()[0],
                               {direction: "sendonly"});
  await pc.setLocalDescription();
  await gathered(pc);
  return [pc.localDescription.sdp, tr.mid];
};
window.restartOffer = async () => {
  pc.restartIce();
  await pc.setLocalDescription();
  await gathered(pc);
  return pc.localDescription.sdp;
};
window.setAnswer = (sdp) => pc.setRemoteDescription({type: "answer", sdp});
window.subscriber = () => {
  window.pc = new RTCPeerConnection({bundlePolicy: "max-bundle", rtcpMuxPolicy: "require"});
  window.tracks = [];
  window.trackByMid = {};
  pc.ontrack = (e) => {
    tracks.push({kind: e.track.kind, streams: e.streams.map(s => s.id), mid: e.transceiver.mid});
    trackByMid[e.transceiver.mid] = e.track;
    const el = document.createElement(e.track.kind);
    el.autoplay = true; el.srcObject = new MediaStream([e.track]);
    document.body.appendChild(el); el.play().catch(() => {});
  };
};
window.transceivers = () => pc.getTransceivers().map(t => [t.mid, t.currentDirection]);
window.trackStates = () => Object.fromEntries(
  Object.entries(trackByMid).map(([mid, t]) => [mid, t.readyState]));
window.inbound = async () => {
  const out = {};
  (await pc.getStats()).forEach(r => {
    if (r.type === "inbound-rtp") out[r.mid] = {kind: r.kind, frames: r.framesDecoded || 0,
      nacks: r.nackCount || 0, plis: r.pliCount || 0, samples: r.totalSamplesReceived || 0,
      concealed: r.concealedSamples || 0, lost: r.packetsLost || 0, packets: r.packetsReceived || 0,
      jbDelay: r.jitterBufferDelay || 0, jbEmitted: r.jitterBufferEmittedCount || 0};
  });
  return out;
};
"""


async def run() -> dict[str, Any]:
    results: dict[str, Any] = {}
    sfu = SFU(MediaConfig(ice_addresses=("127.0.0.1",), ice_servers=(),
                          bandwidth_allocation=bandwidth_allocation()))
    events: list[MediaEvent] = []
    sfu.add_listener(events.append)
    router = sfu.router("meeting")
    async with page_server({"/": "<html></html>"}) as url, chromium(
            "--disable-features=WebRtcHideLocalIpsWithMdns",
            "--autoplay-policy=no-user-gesture-required") as browser:
        pages: list[Page] = []
        for _ in range(2):
            page = await browser.new_page()
            await page.add_init_script(CLIENT_JS)
            await page.goto(url + "/")
            pages.append(page)
        a, b = pages
        alice, bob = router.add_peer("alice"), router.add_peer("bob")

        # Alice publishes camera + mic.
        result = await alice.publish(await a.evaluate("publishOffer()"))
        await a.evaluate("s => setAnswer(s)", result.sdp)
        results["published"] = sorted(f"{x.kind.value}/{x.codec}" for x in result.added)

        # Bob subscribes; 5% of his video packets are lost on the way.
        await b.evaluate("subscriber()")
        sub = await bob.subscribe(*[x.id for x in router.producers()])
        assert sub.offer is not None
        results["next_offer"] = await bob.set_answer(
            await b.evaluate("s => applyOffer(s)", sub.offer.sdp))
        [transport] = bob.transports
        video = next(c for c in bob.consumers if c.kind.value == "video")
        forward, rng = transport.forward_rtp, random.Random(1)
        transport.fast_path = False  # forwarded packets then go through forward_rtp
        transport.forward_rtp = lambda b1, seq, ts, ssrc, tail: (  # type: ignore[method-assign]
            True if ssrc == video.ssrc and rng.random() < 0.05
            else forward(b1, seq, ts, ssrc, tail))
        await asyncio.sleep(3)
        results["joined"] = await b.evaluate("inbound()")
        results["retransmissions"] = video.retransmissions_sent

        # Alice shares a screen (renegotiation on both transports).
        sdp, mid = await a.evaluate("addScreen()")
        result = await alice.publish(sdp, {mid: "screen"})
        await a.evaluate("s => setAnswer(s)", result.sdp)
        sub = await bob.subscribe(result.added[0].id)
        assert sub.offer is not None
        await bob.set_answer(await b.evaluate("s => applyOffer(s)", sub.offer.sdp))
        await asyncio.sleep(1.5)
        results["screen"] = await b.evaluate("inbound()")
        results["tracks"] = await b.evaluate("tracks")

        # ICE restarts: server-initiated on bob, client-initiated on alice.
        ports = [t.local_port for t in (bob.transports[0], alice.transports[0])]
        offer = await bob.restart_ice()
        assert offer is not None
        await bob.set_answer(await b.evaluate("s => applyOffer(s)", offer.sdp))
        result = await alice.publish(await a.evaluate("restartOffer()"))
        await a.evaluate("s => setAnswer(s)", result.sdp)
        await asyncio.sleep(2)
        results["ports_changed"] = [t.local_port != port for t, port in
                                    zip((bob.transports[0], alice.transports[0]), ports)]
        results["restarted"] = await b.evaluate("inbound()")

        # Chair mute of the camera, then unmute.
        camera = next(x.id for x in router.producers() if x.source.value == "camera")
        router.pause_producer(camera)
        await asyncio.sleep(0.5)
        before = await b.evaluate("inbound()")
        await asyncio.sleep(1)
        results["muted"] = [before, await b.evaluate("inbound()")]
        router.resume_producer(camera)
        await asyncio.sleep(1.5)
        results["unmuted"] = await b.evaluate("inbound()")

        # Recycling: bob drops the screen and the camera, then takes them back; the new
        # consumers take the rejected m-sections (same index, new mids). Then the mic and
        # the camera: the mic lands in a former video m-section (kind change), the
        # camera in a new one (the first m-section only goes inactive).
        offers: list[list[tuple[str, int, str]]] = []

        async def negotiate(offer: Any) -> None:
            while offer is not None:
                parsed = SessionDescription.parse(offer.sdp)
                offers.append([(m.kind, m.port, m.rtp.muxId) for m in parsed.media])
                answer = await b.evaluate("s => applyOffer(s)", offer.sdp)
                offer = await bob.set_answer(answer)

        source_ids = {x.source.value: x.id for x in router.producers()}
        rounds = []
        for sources in (["screen", "camera"], ["mic", "camera"]):
            for source in sources:
                consumer = next(c for c in bob.consumers if c.producer.id == source_ids[source])
                await negotiate(await bob.unsubscribe(consumer.id))
            sub = await bob.subscribe(*[source_ids[s] for s in sources])
            await negotiate(sub.offer)
            rounds.append({c.source.value: c.mid for c in sub.consumers})
        await asyncio.sleep(2)
        results["recycle"] = {"offers": offers, "rounds": rounds,
                              "inbound": await b.evaluate("inbound()"),
                              "transceivers": await b.evaluate("transceivers()"),
                              "track_states": await b.evaluate("trackStates()")}

        # Alice leaves; bob renegotiates her m-sections away.
        await router.close_peer("alice")
        offer = await bob.offer()
        assert offer is not None
        await bob.set_answer(await b.evaluate("s => applyOffer(s)", offer.sdp))
        results["left_directions"] = await b.evaluate(
            "pc.getTransceivers().map(t => t.currentDirection)")
        results["events"] = sorted({type(e).__name__ for e in events})
    await sfu.close()
    return results


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run())))
