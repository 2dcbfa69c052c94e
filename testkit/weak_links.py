"""One call through the SFU with real aiortc peers, each subscriber on its own emulated link
(testkit/netem.py), measured at the subscribers: received bitrate over time, decoded video
frames and their freezes, audio packet arrival gaps. Shared by tests/testkit/
test_weak_links.py and bench/network.py; runs inside a loopback-only network namespace:

    unshare -n sh -c 'ip link set lo up && .venv/bin/python -m testkit.weak_links loss5 20'

prints the call's JSON (`--simulcast`: the simulcast path, below). The publisher is clean;
on the single-layer path its video is either pre-encoded (no rate control: what the SFU
forwards is fixed) or encoded live by aiortc, whose VP8 encoder follows the REMB the SFU
sends it (the lowest of its subscribers' estimates): a browser publisher without simulcast
behaves the same way.

The simulcast path: the camera is published by testkit/simulcast_publisher.py (browser-like
VP8 simulcast over DTLS/SRTP, three layers pre-encoded at 160x90, 320x180 and 640x360, about
100, 350 and 1,100 kbit/s at 15 fps, SIM_LAYERS), the microphone by an aiortc client of its
own, and the SFU runs with `MediaConfig(bandwidth_allocation=True)`: each subscriber's layer
follows its own downlink estimate, the REMB its aiortc receiver sends (abs-send-time, as a
browser's). Each consumer's current and allocated layer and its estimate are sampled every
0.1 s. Viewers marked `late` join once the others are settled (on the top layer, at most
WARMUP_S or `--warmup`), as a ward joining a meeting already under way. With `--twcc` the
subscribers send transport-wide feedback as Chromium does (testkit/twcc_client.py) and the
SFU estimates their downlinks itself, probing with padding before raising a layer
(`MediaConfig.subscriber_transport_cc`; docs/media.md).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import pickle
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
from aiortc import MediaStreamTrack, VideoStreamTrack
from aiortc.mediastreams import MediaStreamError

from media import SFU, Direction, Kind, MediaConfig, Peer
from media.codecs import vp8_keyframe
from testkit.aiortc_clients import Publisher, Subscriber, _prefer, encode_media, wait_for
from testkit.ice import gather_only_on
from testkit.netem import CLEAN, Netem, Shape
from testkit.simulcast_publisher import SimulcastMedia, SimulcastPublisher, encode_simulcast
from testkit.twcc_client import TwccFeedback, keep_transport_cc

LIVE_W, LIVE_H = 640, 360
BIN_S = 0.5  # the bitrate timeline's resolution
LAYER_S = 0.1  # the layer timeline's
FREEZE_S = 0.5
# The simulcast path's camera layers, low to high: (width, height, target bit rate); the
# browser's cameraEncodings ask for at most 150k / 500k / 1.5M (docs/media.md).
SIM_LAYERS = ((160, 90, 100_000), (320, 180, 350_000), (640, 360, 1_100_000))
SIM_LOOP_S = 4.0  # the pre-encoded loop (one keyframe per loop and per keyframe request)
WARMUP_S = 20.0  # the longest wait for the first viewers to reach the top layer
GAP_WAIT_S = 0.5  # a missing video packet still missing after this is skipped (+ a PLI)


@dataclass
class Viewer:
    """A subscriber and its link; `changes` are (seconds into the call, Shape fields)."""

    name: str
    shape: Shape = CLEAN
    changes: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    by_server_port: bool = False  # name the link by the SFU's port, as for a browser
    late: bool = False  # joins once the others are settled (simulcast: on the top layer)
    # Simulcast: the layer the subscriber asks for at join (None: the allocator's or the
    # top), and later (seconds into the call, layer): as the web client's tile would.
    start_layer: int | None = None
    layer_changes: list[tuple[float, int | None]] = field(default_factory=list)


@dataclass(frozen=True)
class Profile:
    name: str
    viewers: tuple[Viewer, ...]
    seconds: float
    allocation: bool = True  # simulcast path: MediaConfig.bandwidth_allocation


def profiles(seconds: float) -> dict[str, Profile]:
    """The weak-link profiles of issue 15 (bench/network.py runs them all)."""
    third = seconds / 3
    return {p.name: p for p in (
        Profile("clean", (Viewer("strong"),), seconds),
        Profile("weak_ward", (Viewer("strong"), Viewer("ward", Shape(rate_bps=300_000),
                                                       by_server_port=True, late=True)),
                seconds),
        Profile("rate_drop", (Viewer("strong"), Viewer("dropping", Shape(
            rate_bps=4_000_000), [(third, {"rate_bps": 500_000}),
                                  (2 * third, {"rate_bps": 4_000_000})])), seconds),
        Profile("loss5", (Viewer("strong"), Viewer("lossy", Shape(loss=0.05))), seconds),
        # A 300 kbit/s ward on the low layer asks for 320x180 (~350 kbit/s) for 3 s and back,
        # as a failed try of the allocator (off here, so nothing else moves the layer): the
        # overflow's losses are NACKed; the rest of the call shows how the ward recovers.
        Profile("ward_overload", (Viewer("strong"), Viewer(
            "ward", Shape(rate_bps=300_000), by_server_port=True, late=True, start_layer=0,
            layer_changes=[(1.0, 1), (4.0, 0)])), seconds, allocation=False),
    )}


class LiveVideo(VideoStreamTrack):
    """Raw 640x360 frames (a moving bar and a band of fresh noise) for aiortc to encode."""

    def __init__(self) -> None:
        super().__init__()
        chroma = bytes([128]) * (LIVE_W * LIVE_H // 4)
        self._frames = []
        for i in range(30):
            frame = av.VideoFrame(LIVE_W, LIVE_H, "yuv420p")
            luma = bytearray(LIVE_W * LIVE_H)
            for row in range(0, LIVE_H):
                x0 = (i * 16 + row) % LIVE_W
                end = min(LIVE_W, x0 + 80)
                luma[row * LIVE_W + x0:row * LIVE_W + end] = b"\xff" * (end - x0)
            luma[LIVE_W * 150:LIVE_W * 154] = os.urandom(LIVE_W * 4)
            frame.planes[0].update(bytes(luma))
            frame.planes[1].update(chroma)
            frame.planes[2].update(chroma)
            self._frames.append(frame)
        self._count = 0

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = self._frames[self._count % len(self._frames)]
        self._count += 1
        frame.pts, frame.time_base = pts, time_base
        return frame


class MeasuredSubscriber(Subscriber):
    """A decoding subscriber that also notes each RTP packet's arrival (after SRTP, before
    the jitter buffer) and each decoded frame."""

    def __init__(self, peer: Any) -> None:
        super().__init__(peer)
        self.rtp: list[tuple[float, str, int, int]] = []  # (arrival, kind, bytes, RTP ts)
        self.decoded: dict[str, list[float]] = {"audio": [], "video": []}
        self.gaps_skipped = 0  # recover_like_a_browser
        self.keyframe_skips = 0

    def watch(self) -> None:
        for transceiver in self.pc.getTransceivers():
            receiver, kind = transceiver.receiver, transceiver.kind
            if getattr(receiver, "_measured", False):
                continue
            handle = receiver._handle_rtp_packet

            async def noted(packet: Any, arrival_time_ms: int, _kind: str = kind,
                            _handle: Any = handle) -> None:
                self.rtp.append((time.monotonic(), _kind, len(packet.payload) + 12,
                                 packet.timestamp))
                await _handle(packet, arrival_time_ms)

            setattr(receiver, "_handle_rtp_packet", noted)  # noqa: B010 (a method, replaced)
            setattr(receiver, "_measured", True)  # noqa: B010

    async def _consume(self, track: MediaStreamTrack, stats: Any) -> None:
        try:
            while True:
                await track.recv()
                stats.frames += 1
                self.decoded[track.kind].append(time.monotonic())
        except MediaStreamError:
            pass

    async def recover_like_a_browser(self) -> None:
        """aiortc's jitter buffer hands frames on in order only: a frame missing a packet
        holds everything behind it until 512 packets later (tens of seconds at a low
        layer's rate; a 300 kbit/s ward froze 25-30 s after one lost packet), and it never
        asks for a keyframe then. A browser's packet buffer drops the frame it cannot
        complete and requests a keyframe. Here, likewise: when the buffer's head has not
        moved for GAP_WAIT_S (time for NACK and RTX through a full 200 ms queue) while a
        hole lies behind it, everything up to the first packet after the hole is dropped
        and a PLI sent. And, as a browser's frame buffer decodes a complete keyframe at
        once whatever is missing before it (and its NACK module forgets those packets),
        a complete VP8 keyframe behind a hole is skipped to at once (`keyframe_skips`)."""
        [receiver] = [t.receiver for t in self.pc.getTransceivers() if t.kind == "video"]
        buffer = getattr(receiver, "_RTCRtpReceiver__jitter_buffer")  # noqa: B009 (aiortc's)
        nacks = getattr(receiver, "_RTCRtpReceiver__nack_generator")  # noqa: B009
        blocked: tuple[int, float] | None = None
        while True:
            await asyncio.sleep(0.05)
            origin, packets, cap = buffer._origin, buffer._packets, buffer.capacity
            hole = None if origin is None else next(
                (i for i in range(cap) if packets[(origin + i) % cap] is None), None)
            if hole is None or not any(packets[(origin + i) % cap] is not None
                                       for i in range(hole, cap)):
                blocked = None  # nothing waits behind a hole
                continue
            key = _complete_keyframe(packets, origin, hole, cap)
            if key is not None:
                buffer.remove(key)  # what lies before the keyframe; it decodes next
                if nacks is not None:
                    nacks.missing = {seq for seq in nacks.missing
                                     if key <= (seq - origin) % 0x10000 < 0x8000}
                self.keyframe_skips += 1
                blocked = None
                continue
            now = time.monotonic()
            if blocked is None or blocked[0] != origin:
                blocked = (origin, now)
                continue
            if now - blocked[1] < GAP_WAIT_S:
                continue
            skip = hole
            while packets[(origin + skip) % cap] is None:
                skip += 1
            ssrc = next(p.ssrc for p in packets if p is not None)
            buffer.remove(skip)  # the incomplete frame and the hole
            self.gaps_skipped += 1
            blocked = None
            await receiver._send_rtcp_pli(ssrc)

    def local_port(self) -> int:
        ice = self.pc.getTransceivers()[0].receiver.transport.transport._connection
        return int(ice.local_candidates[0].port)


def _complete_keyframe(packets: list[Any], origin: int, hole: int, cap: int) -> int | None:
    """The offset from the jitter buffer's `origin` of the first VP8 keyframe after `hole`
    whose packets are all there up to the next frame's first one; None if there is none."""
    start = None
    for i in range(hole + 1, cap):
        packet = packets[(origin + i) % cap]
        if start is not None:
            if packet is None:
                start = None  # incomplete: look for a later one
            elif packet.timestamp != packets[(origin + start) % cap].timestamp:
                return start
        elif packet is not None and vp8_keyframe(packet.payload):
            start = i
    return None


async def server_port(peer: Peer, timeout: float = 10.0) -> int:
    """The SFU's UDP port of `peer`'s receiving transport once ICE chose it: how a harness
    names a browser subscriber's link (the test does not know the browser's own port).
    The first packets (ICE, DTLS) cross the link unimpaired. Holds while the SFU gives each
    transport a port of its own (one shared port would need the client's port instead)."""
    def port() -> int | None:
        transport = peer.transport(Direction.RECV)
        return None if transport is None else transport.local_port

    await wait_for(lambda: port() is not None, timeout)
    return port() or 0


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def audio_arrivals(sub: MeasuredSubscriber, t0: float, t1: float) -> list[float]:
    return [at for at, kind, _, _ in sub.rtp if kind == "audio" and t0 <= at < t1]


def own_gaps(audio: list[float], others: list[list[float]], over_s: float = 0.1) -> int:
    """Audio gaps over `over_s` during which another subscriber of the same process received
    audio: the link's, not a stall of this shared process (a loaded 2-core box)."""
    count = 0
    for a, b in itertools.pairwise(audio):
        if b - a > over_s and any(any(a + 0.03 < at < b - 0.03 for at in o) for o in others):
            count += 1
    return count


def measure(sub: MeasuredSubscriber, t0: float, t1: float,
            others: list[list[float]]) -> dict[str, Any]:
    bins = [0] * max(1, int((t1 - t0) / BIN_S))
    for at, kind, size, _ in sub.rtp:
        if kind == "video" and t0 <= at < t1:
            bins[min(len(bins) - 1, int((at - t0) / BIN_S))] += size
    frames = [at for at in sub.decoded["video"] if t0 <= at < t1]
    edges = [t0, *frames, t1]
    spans = [(a - t0, b - a) for a, b in itertools.pairwise(edges) if b - a > FREEZE_S]
    freezes = [length for _, length in spans]
    audio = audio_arrivals(sub, t0, t1)
    arrival_gaps = [(b - a) * 1000 for a, b in itertools.pairwise(audio)]
    stamps = [ts for at, kind, _, ts in sub.rtp if kind == "audio" and t0 <= at < t1]
    # audio missing between two packets received in a row, in the sender's time: what a
    # listener loses, whatever this process's scheduling did to arrival times
    gaps = [((b - a) % (1 << 32)) / 48 for a, b in itertools.pairwise(stamps)
            if 0 < (b - a) % (1 << 32) < 48_000 * 10]
    expected = ((stamps[-1] - stamps[0]) % (1 << 32)) // 960 + 1 if stamps else 0
    minutes = (t1 - t0) / 60
    return {
        "video_kbps": [round(b * 8 / BIN_S / 1000, 1) for b in bins],
        "video_kbps_mean": round(sum(bins) * 8 / (t1 - t0) / 1000, 1),
        "video_fps": round(len(frames) / (t1 - t0), 1),
        "freezes_over_500ms": len(freezes),
        "freezes_over_500ms_per_min": round(len(freezes) / minutes, 2),
        "longest_freeze_ms": round(max(freezes, default=0.0) * 1000),
        "freeze_spans_s": [[round(at, 2), round(length, 2)] for at, length in spans],
        "audio_packets": len(audio),
        "audio_loss": round(1 - len(set(stamps)) / expected, 4) if expected else None,
        "audio_gap_p99_ms": round(pct(gaps, 0.99) or 0.0, 1) if gaps else None,
        "audio_gap_max_ms": round(max(gaps), 1) if gaps else None,
        "audio_arrival_gap_p99_ms": round(pct(arrival_gaps, 0.99) or 0.0, 1)
        if arrival_gaps else None,
        "audio_arrival_gaps_over_100ms": sum(g > 100 for g in arrival_gaps),
        "audio_arrival_gaps_over_100ms_own": own_gaps(audio, others),
    }


async def probe_lag(into: list[float]) -> None:
    """How late a 10 ms sleep wakes: stalls of this process (SFU and clients share it)."""
    while True:
        started = time.monotonic()
        await asyncio.sleep(0.01)
        into.append(time.monotonic() - started - 0.01)


async def sample_remb(producer: Any, into: dict[str, list[int | None]]) -> None:
    """Every BIN_S: the REMB the SFU sends the publisher and each consumer's last one."""
    while True:
        into["publisher"].append(_kbps(producer.remb_sent))
        for consumer in producer.consumers:
            into.setdefault(consumer.peer_id, []).append(_kbps(consumer.remb_bps))
        await asyncio.sleep(BIN_S)


def _kbps(bps: int | None) -> int | None:
    return None if bps is None else round(bps / 1000)


def simulcast_media(cache: Path | None = None) -> SimulcastMedia:
    """SIM_LAYERS encoded (about 30 s on a loaded 2-core box), cached in `cache` if given."""
    if cache is not None and cache.exists():
        with cache.open("rb") as f:
            media: SimulcastMedia = pickle.load(f)  # our own file
        return media
    media = encode_simulcast(SIM_LOOP_S, tuple((w, h) for w, h, _ in SIM_LAYERS),
                             tuple(bps for _, _, bps in SIM_LAYERS))
    if cache is not None:
        with cache.open("wb") as f:
            pickle.dump(media, f)
    return media


def _video_consumer(peer: Peer) -> Any:
    return next((c for c in peer.consumers if c.kind is Kind.VIDEO), None)


def prefer(peer: Peer, layer: int | None) -> None:
    """The subscriber's preferred spatial layer of its video (as media:layers sets it)."""
    consumer = _video_consumer(peer)
    if consumer is not None:
        peer.set_preferred_layers(consumer.id, layer)


async def sample_layers(peers: dict[str, Peer], t0: list[float],
                        into: dict[str, list[list[Any]]]) -> None:
    """Every LAYER_S: per viewer [seconds, current layer, allocated layer (None: paused),
    estimate kbit/s], only when one of them changed."""
    while True:
        now = time.monotonic() - t0[0]
        for name, peer in peers.items():
            consumer = _video_consumer(peer)
            if consumer is None:
                continue
            downlink = peer.downlink()
            allocated = None if consumer.allocated_off else consumer.allocated_layer
            row = [round(now, 2), consumer.current_layer, allocated,
                   _kbps(downlink.estimate_bps if downlink is not None else None)]
            rows = into.setdefault(name, [])
            if not rows or rows[-1][1:] != row[1:]:
                rows.append(row)
        await asyncio.sleep(LAYER_S)


async def run_call(profile: Profile, live: bool = True, simulcast: bool = False,
                   media_cache: Path | None = None,
                   warmup_s: float = WARMUP_S, transport_cc: bool = False) -> dict[str, Any]:
    """Publish, subscribe every viewer on its link (late ones once the others are settled),
    wait for video everywhere, then measure for `profile.seconds` while the links change on
    schedule. `transport_cc`: the subscribers send transport-wide feedback as a browser
    does (testkit/twcc_client.py) and the SFU estimates and probes their downlinks."""
    gather_only_on("127.0.0.1")
    if transport_cc:
        keep_transport_cc()  # this process's aiortc answers the extension
    feedback: dict[str, TwccFeedback] = {}
    netem = Netem()
    config = MediaConfig(ice_addresses=("127.0.0.1",), ice_servers=(), ice_timeout_s=10.0,
                         rtcp_interval_s=0.5,
                         bandwidth_allocation=simulcast and profile.allocation,
                         subscriber_transport_cc=transport_cc)
    sfu = SFU(config)
    router = sfu.router("weak-links")
    media = await asyncio.get_running_loop().run_in_executor(None, encode_media, 2.0)
    sim: SimulcastPublisher | None = None
    sim_task: asyncio.Future[None] | None = None
    if simulcast:
        layers = await asyncio.get_running_loop().run_in_executor(
            None, simulcast_media, media_cache)
        sim = SimulcastPublisher(router.add_peer("camera"), layers, MediaConfig(
            ice_addresses=("127.0.0.1",), ice_servers=()))
        pub = Publisher(router.add_peer("publisher"), media, video=None)  # the microphone
    else:
        pub = Publisher(router.add_peer("publisher"), media, video=None if live else "VP8")
        if live:
            transceiver = pub.pc.addTransceiver(LiveVideo(), direction="sendonly")
            _prefer(transceiver, "video", "VP8")
    subs: dict[str, MeasuredSubscriber] = {}
    peers: dict[str, Peer] = {}
    ports: dict[str, int] = {}
    warmup: dict[str, float | None] = {}
    recovery: list[asyncio.Future[None]] = []
    clock = [time.monotonic()]  # the layer samples' origin: t0 once measuring
    layer_rows: dict[str, list[list[Any]]] = {}
    layer_sampler = asyncio.ensure_future(sample_layers(peers, clock, layer_rows)) \
        if simulcast else None
    try:
        await pub.publish()
        ids = [pub.producer_id("audio")]
        if sim is not None:
            await sim.publish()
            sim_task = asyncio.ensure_future(sim.run(profile.seconds + 3 * warmup_s + 60))
            ids.append(sim.producer_id)
        else:
            ids.append(pub.producer_id("video"))
        top = len(SIM_LAYERS) - 1 if simulcast else None

        async def join(viewer: Viewer) -> None:
            peer = peers[viewer.name] = router.add_peer(viewer.name)
            sub = subs[viewer.name] = MeasuredSubscriber(peer)
            await sub.subscribe(*ids)
            if transport_cc:
                feedback[viewer.name] = TwccFeedback(sub)
            if viewer.start_layer is not None:
                prefer(peer, viewer.start_layer)
            sub.watch()
            recovery.append(asyncio.ensure_future(sub.recover_like_a_browser()))
            if viewer.by_server_port:
                ports[viewer.name] = await server_port(peer)
                netem.shape(ports[viewer.name], viewer.shape, server_side=True)
            else:
                ports[viewer.name] = sub.local_port()
                netem.shape(ports[viewer.name], viewer.shape)

        async def settle(names: list[str]) -> None:
            """Video at each; simulcast: each on the top layer (at most `warmup_s`)."""
            started = time.monotonic()
            await wait_for(lambda: all(subs[n].frames("video") > 0 for n in names), 20)
            if top is None:
                return
            for name in names:
                consumer = _video_consumer(peers[name])

                def on_top(c: Any = consumer) -> bool:
                    return bool(c.current_layer == top)

                try:
                    await wait_for(on_top, max(0.1, started + warmup_s - time.monotonic()))
                    warmup[name] = round(time.monotonic() - started, 1)
                except (AssertionError, TimeoutError):
                    warmup[name] = None  # not on the top layer within warmup_s

        early = [v for v in profile.viewers if not v.late]
        late = [v for v in profile.viewers if v.late]
        for viewer in early:
            await join(viewer)
        await settle([v.name for v in early])
        for viewer in late:
            await join(viewer)
        await wait_for(lambda: all(s.frames("video") > 0 for s in subs.values()), 20)
        if late and top is not None:
            await settle([v.name for v in profile.viewers if not v.late])
        t0 = time.monotonic()
        clock[0] = t0
        layer_rows.clear()
        remb: dict[str, list[int | None]] = {"publisher": []}
        sampler = asyncio.ensure_future(sample_remb(router.get_producer(ids[1]), remb))
        lags: list[float] = []
        prober = asyncio.ensure_future(probe_lag(lags))
        events = sorted((at, v.name, ch) for v in profile.viewers for at, ch in v.changes)
        layer_events = [(at, v.name, {"layer": layer}) for v in profile.viewers
                        for at, layer in v.layer_changes]
        for at, name, fields in sorted(events + layer_events, key=lambda e: e[0]):
            await asyncio.sleep(max(0.0, t0 + at - time.monotonic()))
            if "layer" in fields:
                prefer(peers[name], fields["layer"])
            else:
                netem.change(ports[name], **fields)  # both directions, whichever port names it
        await asyncio.sleep(max(0.0, t0 + profile.seconds - time.monotonic()))
        t1 = time.monotonic()
        sampler.cancel()
        prober.cancel()
        if layer_sampler is not None:
            layer_sampler.cancel()
        out: dict[str, Any] = {
            "profile": profile.name, "seconds": profile.seconds,
            "path": "simulcast + allocation" if simulcast else "single-layer",
            "publisher": ("simulcast VP8, pre-encoded, 3 layers" if simulcast else
                          "live VP8 (follows REMB)" if live else "pre-encoded VP8"),
            "links": {v.name: v.shape.label() for v in profile.viewers},
            "changes": [{"at_s": at, "viewer": n, **f} for at, n, f in events + layer_events],
            "bin_s": BIN_S,
            "viewers": {name: measure(sub, t0, t1, [audio_arrivals(o, t0, t1) for o in
                                                    subs.values() if o is not sub])
                        for name, sub in subs.items()},
            "loop_lag_max_ms": round(max(lags, default=0.0) * 1000),
            "gaps_skipped": {name: sub.gaps_skipped for name, sub in subs.items()},
            "keyframe_skips": {name: sub.keyframe_skips for name, sub in subs.items()},
            "remb_kbps": remb,
            "link_counters": netem.counters()}
        if simulcast:
            producer = router.get_producer(ids[1])
            audio = router.get_producer(ids[0])
            out.update(
                layer_kbps=[_kbps(s.rate.bps) for s in producer.streams],
                audio_kbps=_kbps(audio.streams[0].rate.bps),
                layers=layer_rows, top_layer=top, warmup_s=warmup,
                consumers={name: _consumer_stats(peer) for name, peer in peers.items()},
                downlink_stats={name: vars(peer.downlink_stats()).copy()
                                for name, peer in peers.items()},
                transport_cc=transport_cc,
                feedback_stats={name: vars(peer.downlink_feedback_stats()).copy()
                                for name, peer in peers.items()},
                probe_stats={name: vars(peer.downlink_probe_stats()).copy()
                             for name, peer in peers.items()},
                retransmissions={name: vars(peer.retransmission_stats())
                                 for name, peer in peers.items()})
        return out
    finally:
        for task in recovery:
            task.cancel()
        if layer_sampler is not None:
            layer_sampler.cancel()
        for fb in feedback.values():
            await fb.stop()
        for sub in subs.values():
            await sub.close()
        if sim_task is not None:
            sim_task.cancel()
            await asyncio.gather(sim_task, return_exceptions=True)
        if sim is not None:
            await sim.close()
        await pub.close()
        await sfu.close()
        netem.close()


def _consumer_stats(peer: Peer) -> dict[str, Any]:
    consumer = _video_consumer(peer)
    if consumer is None:
        return {}
    stats = consumer.stats()
    return {key: getattr(stats, key) for key in (
        "layer_switches", "keyframe_requests_received", "keyframe_requests_suppressed",
        "nacks_received", "retransmissions_sent", "retransmissions_refused")}


def main() -> None:
    """`python -m testkit.weak_links PROFILE SECONDS [--pre-encoded] [--simulcast]
    [--media-cache PATH] [--warmup SECONDS] [--twcc]`"""
    name, seconds = sys.argv[1], float(sys.argv[2])
    live = "--pre-encoded" not in sys.argv

    def option(flag: str) -> str | None:
        return sys.argv[sys.argv.index(flag) + 1] if flag in sys.argv else None

    cache = option("--media-cache")
    print(json.dumps(asyncio.run(run_call(
        profiles(seconds)[name], live, "--simulcast" in sys.argv,
        Path(cache) if cache else None, float(option("--warmup") or WARMUP_S),
        "--twcc" in sys.argv))))


if __name__ == "__main__":
    main()
