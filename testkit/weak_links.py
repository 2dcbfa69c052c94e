"""One call through the SFU with real aiortc peers, each subscriber on its own emulated link
(testkit/netem.py), measured at the subscribers: received bitrate over time, decoded video
frames and their freezes, audio packet arrival gaps. Shared by tests/testkit/
test_weak_links.py and bench/network.py; runs inside a loopback-only network namespace:

    unshare -n sh -c 'ip link set lo up && .venv/bin/python -m testkit.weak_links loss5 20'

prints the call's JSON. The publisher is clean; its video is either pre-encoded (no rate
control: what the SFU forwards is fixed) or encoded live by aiortc, whose VP8 encoder
follows the REMB the SFU sends it (the lowest of its subscribers' estimates, today's
single-layer path): a browser publisher behaves the same way.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import av
from aiortc import MediaStreamTrack, VideoStreamTrack
from aiortc.mediastreams import MediaStreamError

from media import SFU, Direction, MediaConfig, Peer
from testkit.aiortc_clients import Publisher, Subscriber, _prefer, encode_media, wait_for
from testkit.ice import gather_only_on
from testkit.netem import CLEAN, Netem, Shape

LIVE_W, LIVE_H = 640, 360
BIN_S = 0.5  # the bitrate timeline's resolution
FREEZE_S = 0.5


@dataclass
class Viewer:
    """A subscriber and its link; `changes` are (seconds into the call, Shape fields)."""

    name: str
    shape: Shape = CLEAN
    changes: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    by_server_port: bool = False  # name the link by the SFU's port, as for a browser


@dataclass(frozen=True)
class Profile:
    name: str
    viewers: tuple[Viewer, ...]
    seconds: float


def profiles(seconds: float) -> dict[str, Profile]:
    """The weak-link profiles of issue 15 (bench/network.py runs them all)."""
    third = seconds / 3
    return {p.name: p for p in (
        Profile("clean", (Viewer("strong"),), seconds),
        Profile("weak_ward", (Viewer("strong"), Viewer("ward", Shape(rate_bps=300_000),
                                                       by_server_port=True)), seconds),
        Profile("rate_drop", (Viewer("strong"), Viewer("dropping", Shape(
            rate_bps=4_000_000), [(third, {"rate_bps": 500_000}),
                                  (2 * third, {"rate_bps": 4_000_000})])), seconds),
        Profile("loss5", (Viewer("strong"), Viewer("lossy", Shape(loss=0.05))), seconds),
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

    def local_port(self) -> int:
        ice = self.pc.getTransceivers()[0].receiver.transport.transport._connection
        return int(ice.local_candidates[0].port)


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
    freezes = [b - a for a, b in itertools.pairwise(edges) if b - a > FREEZE_S]
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


async def run_call(profile: Profile, live: bool = True) -> dict[str, Any]:
    """Publish, subscribe every viewer on its link, wait for video everywhere, then measure
    for `profile.seconds` while the links change on schedule."""
    gather_only_on("127.0.0.1")
    netem = Netem()
    sfu = SFU(MediaConfig(ice_addresses=("127.0.0.1",), ice_servers=(), ice_timeout_s=10.0,
                          rtcp_interval_s=0.5))
    router = sfu.router("weak-links")
    media = await asyncio.get_running_loop().run_in_executor(None, encode_media, 2.0)
    pub = Publisher(router.add_peer("publisher"), media, video=None if live else "VP8")
    if live:
        transceiver = pub.pc.addTransceiver(LiveVideo(), direction="sendonly")
        _prefer(transceiver, "video", "VP8")
    subs: dict[str, MeasuredSubscriber] = {}
    ports: dict[str, int] = {}
    try:
        await pub.publish()
        ids = [pub.producer_id("audio"), pub.producer_id("video")]
        for viewer in profile.viewers:
            peer = router.add_peer(viewer.name)
            sub = subs[viewer.name] = MeasuredSubscriber(peer)
            await sub.subscribe(*ids)
            sub.watch()
            if viewer.by_server_port:
                ports[viewer.name] = await server_port(peer)
                netem.shape(ports[viewer.name], viewer.shape, server_side=True)
            else:
                ports[viewer.name] = sub.local_port()
                netem.shape(ports[viewer.name], viewer.shape)
        await wait_for(lambda: all(s.frames("video") > 0 for s in subs.values()), 20)
        t0 = time.monotonic()
        remb: dict[str, list[int | None]] = {"publisher": []}
        sampler = asyncio.ensure_future(sample_remb(router.get_producer(ids[1]), remb))
        lags: list[float] = []
        prober = asyncio.ensure_future(probe_lag(lags))
        events = sorted((at, v.name, ch) for v in profile.viewers for at, ch in v.changes)
        for at, name, fields in events:
            await asyncio.sleep(max(0.0, t0 + at - time.monotonic()))
            netem.change(ports[name], **fields)  # both directions, whichever port names it
        await asyncio.sleep(max(0.0, t0 + profile.seconds - time.monotonic()))
        t1 = time.monotonic()
        sampler.cancel()
        prober.cancel()
        return {"profile": profile.name, "seconds": profile.seconds,
                "publisher": "live VP8 (follows REMB)" if live else "pre-encoded VP8",
                "links": {v.name: v.shape.label() for v in profile.viewers},
                "changes": [{"at_s": at, "viewer": n, **f} for at, n, f in events],
                "bin_s": BIN_S,
                "viewers": {name: measure(sub, t0, t1, [audio_arrivals(o, t0, t1) for o in
                                                        subs.values() if o is not sub])
                            for name, sub in subs.items()},
                "loop_lag_max_ms": round(max(lags, default=0.0) * 1000),
                "remb_kbps": remb,
                "link_counters": netem.counters()}
    finally:
        for sub in subs.values():
            await sub.close()
        await pub.close()
        await sfu.close()
        netem.close()


def main() -> None:
    name, seconds = sys.argv[1], float(sys.argv[2])
    live = "--pre-encoded" not in sys.argv
    print(json.dumps(asyncio.run(run_call(profiles(seconds)[name], live))))


if __name__ == "__main__":
    main()
