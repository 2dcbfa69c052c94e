"""aiortc clients for tests and benchmarks: peers publishing pre-encoded media, and
subscribers that decode what they receive. Encode once (tests: a session fixture) and share."""

from __future__ import annotations

import asyncio
import fractions
import math
import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import av
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from aiortc.sdp import SessionDescription

from media import Peer, ServerOffer, aiortc_seam

VIDEO_TIME_BASE = fractions.Fraction(1, 90000)
AUDIO_TIME_BASE = fractions.Fraction(1, 48000)
FPS = 15
WIDTH, HEIGHT = 320, 240
# Never the default (a public STUN server), never the LAN: loopback only.
CLIENT_CONFIG = RTCConfiguration(iceServers=[])


@dataclass
class EncodedVideo:
    codec: str  # "VP8" or "H264"
    frames: list[bytes]  # frame 0 is the only keyframe


@dataclass
class EncodedMedia:
    vp8: EncodedVideo
    h264: EncodedVideo
    opus: list[bytes]  # 20 ms packets


def _frames(count: int) -> list[av.VideoFrame]:
    frames = []
    for i in range(count):
        frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
        luma = bytearray(WIDTH * HEIGHT)
        for row in range(HEIGHT):  # a moving bar plus some noise: several packets/frame
            x0 = (i * 8 + row) % WIDTH
            end = min(WIDTH, x0 + 40)
            luma[row * WIDTH + x0:row * WIDTH + end] = b"\xff" * (end - x0)
        noise = os.urandom(WIDTH * 40)
        luma[WIDTH * 100:WIDTH * 140] = noise
        frame.planes[0].update(bytes(luma))
        frame.planes[1].update(bytes([128 + i % 64]) * (WIDTH * HEIGHT // 4))
        frame.planes[2].update(bytes([128]) * (WIDTH * HEIGHT // 4))
        frame.pts = i
        frames.append(frame)
    return frames


def _encode_video(name: str, options: dict[str, str], count: int,
                  profile: str | None = None) -> list[bytes]:
    codec = av.CodecContext.create(name, "w")
    codec.width, codec.height, codec.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    codec.time_base = fractions.Fraction(1, FPS)
    codec.framerate = FPS
    codec.bit_rate = 600_000
    codec.gop_size = 10_000  # one keyframe; later ones only on request (see track)
    if profile:
        codec.profile = profile
    codec.options = options
    out = []
    for frame in _frames(count):
        out += [bytes(p) for p in codec.encode(frame)]
    out += [bytes(p) for p in codec.encode(None)]
    return out


def _encode_opus(count: int, amplitude: float = 0.3) -> list[bytes]:
    codec = av.CodecContext.create("libopus", "w")
    codec.sample_rate, codec.format, codec.layout = 48000, "s16", "stereo"
    codec.bit_rate = 32000
    codec.time_base = AUDIO_TIME_BASE
    out = []
    for i in range(count):
        samples = [int(amplitude * 32767 * math.sin(2 * math.pi * 440 * (i * 960 + n) / 48000))
                   for n in range(960)]
        frame = av.AudioFrame(format="s16", layout="stereo", samples=960)
        frame.planes[0].update(struct.pack(f"<{1920}h", *[s for s in samples for _ in (0, 1)]))
        frame.sample_rate, frame.pts, frame.time_base = 48000, i * 960, AUDIO_TIME_BASE
        out += [bytes(p) for p in codec.encode(frame)]
    return out


def encode_media(seconds: float = 2.0) -> EncodedMedia:
    count = int(seconds * FPS)
    vp8 = _encode_video("libvpx", {"deadline": "realtime", "cpu-used": "8",
                                   "lag-in-frames": "0"}, count)
    h264 = _encode_video("libx264", {"preset": "ultrafast", "tune": "zerolatency",
                                     "x264-params": "repeat-headers=1:bframes=0"},
                         count, profile="baseline")
    return EncodedMedia(EncodedVideo("VP8", vp8), EncodedVideo("H264", h264),
                        _encode_opus(int(seconds * 50)))


class PacketTrack(MediaStreamTrack):
    """Yields pre-encoded packets at real-time pace, looping.

    aiortc's sender ignores keyframe requests for pre-encoded packets, so the
    publisher helper routes them here: the track jumps back to the keyframe.
    """

    def __init__(self, kind: str, packets: list[bytes], interval: float,
                 time_base: fractions.Fraction, ticks: int) -> None:
        super().__init__()
        self.kind = kind
        self._packets = packets
        self._interval = interval
        self._time_base = time_base
        self._ticks = ticks
        self._index = 0
        self._count = 0
        self._start: float | None = None
        self.keyframe_requests = 0
        self._restart = False

    def request_keyframe(self) -> None:
        self.keyframe_requests += 1
        self._restart = True

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        wait = self._start + self._count * self._interval - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        if self._restart or self._index >= len(self._packets):
            self._index, self._restart = 0, False
        packet = av.Packet(self._packets[self._index])
        packet.pts = self._count * self._ticks
        packet.time_base = self._time_base
        self._index += 1
        self._count += 1
        return packet


def video_track(video: EncodedVideo) -> PacketTrack:
    return PacketTrack("video", video.frames, 1 / FPS, VIDEO_TIME_BASE, 90000 // FPS)


def audio_track(opus: list[bytes]) -> PacketTrack:
    return PacketTrack("audio", opus, 0.02, AUDIO_TIME_BASE, 960)


def _prefer(transceiver: Any, kind: str, name: str) -> None:
    caps = RTCRtpSender.getCapabilities(kind).codecs
    preferred = [c for c in caps if c.name.upper() == name.upper() or c.name == "rtx"]
    if name == "H264":
        preferred = [c for c in preferred if c.name == "rtx"
                     or c.parameters.get("profile-level-id") == "42e01f"]
    transceiver.setCodecPreferences(preferred)


class Publisher:
    """An aiortc client publishing through `peer` (its send transport)."""

    def __init__(self, peer: Peer, media: EncodedMedia, *, video: str | None = "VP8",
                 audio: bool = True, audio_track_: MediaStreamTrack | None = None) -> None:
        self.peer = peer
        self.pc = RTCPeerConnection(CLIENT_CONFIG)
        self.tracks: dict[str, MediaStreamTrack] = {}
        if audio:
            track = audio_track_ or audio_track(media.opus)
            t = self.pc.addTransceiver(track, direction="sendonly")
            _prefer(t, "audio", "opus")
            self.tracks["audio"] = track
        if video:
            encoded = media.vp8 if video == "VP8" else media.h264
            vtrack = video_track(encoded)
            t = self.pc.addTransceiver(vtrack, direction="sendonly")
            _prefer(t, "video", video)
            aiortc_seam.route_keyframe_requests(t.sender, vtrack.request_keyframe)  # PLI/FIR
            self.tracks["video"] = vtrack
        self.result: Any = None

    @property
    def video(self) -> PacketTrack:
        track = self.tracks["video"]
        assert isinstance(track, PacketTrack)
        return track

    async def publish(self, sources: dict[str, str] | None = None) -> Any:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        self.result = await self.peer.publish(self.pc.localDescription.sdp, sources)
        await self.pc.setRemoteDescription(RTCSessionDescription(self.result.sdp, "answer"))
        return self.result

    def producer_id(self, kind: str) -> str:
        return next(p.id for p in self.result.added if p.kind.value == kind)

    async def close(self) -> None:
        await self.pc.close()


@dataclass
class TrackStats:
    kind: str
    frames: int = 0
    first_frame_at: float | None = None
    sizes: set[tuple[int, int]] = field(default_factory=set)


class Subscriber:
    """An aiortc client consuming through `peer` (its receive transport); it
    decodes real frames and counts them per track."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self.pc = RTCPeerConnection(CLIENT_CONFIG)
        self.tracks: list[TrackStats] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.pc.on("track", self._on_track)
        self.offers = 0

    def _on_track(self, track: MediaStreamTrack) -> None:
        stats = TrackStats(track.kind)
        self.tracks.append(stats)
        self._tasks.append(asyncio.ensure_future(self._consume(track, stats)))

    async def _consume(self, track: MediaStreamTrack, stats: TrackStats) -> None:
        try:
            while True:
                frame = await track.recv()
                stats.frames += 1
                if stats.first_frame_at is None:
                    stats.first_frame_at = time.monotonic()
                if isinstance(frame, av.VideoFrame):
                    stats.sizes.add((frame.width, frame.height))
        except MediaStreamError:
            pass

    def frames(self, kind: str) -> int:
        return sum(t.frames for t in self.tracks if t.kind == kind)

    async def apply(self, offer: ServerOffer | None) -> None:
        while offer is not None:
            self.offers += 1
            self._forget_recycled(offer.sdp)
            await self.pc.setRemoteDescription(RTCSessionDescription(offer.sdp, "offer"))
            await self.pc.setLocalDescription(await self.pc.createAnswer())
            await self._stop_rejected(offer.sdp)
            offer = await self.peer.set_answer(self.pc.localDescription.sdp)

    async def _stop_rejected(self, offer_sdp: str) -> None:
        """Stop the transceivers of m-sections the offer rejects (port 0), as
        browsers do. aiortc 1.16 ignores port 0: it would keep each closed
        consumer's receiver (decoder thread, RTCP task) running until close()."""
        rejected = {m.rtp.muxId for m in SessionDescription.parse(offer_sdp).media
                    if m.port == 0}
        for transceiver in self.pc.getTransceivers():
            if transceiver.mid in rejected and not transceiver.stopped:
                await transceiver.stop()

    def _forget_recycled(self, offer_sdp: str) -> None:
        """An m-line the offer recycles (same index, new mid) is taken from the old
        transceiver (media/aiortc_seam.py says why)."""
        aiortc_seam.forget_recycled_mlines(
            self.pc, [m.rtp.muxId for m in SessionDescription.parse(offer_sdp).media])

    async def subscribe(self, *producer_ids: str) -> Any:
        subscription = await self.peer.subscribe(*producer_ids)
        await self.apply(subscription.offer)
        return subscription

    async def close(self) -> None:
        await self.pc.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def wait_for(predicate: Callable[[], bool], timeout: float = 5.0,
                   interval: float = 0.02) -> None:
    """Poll until `predicate()` holds; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


def intercept_rtp(transport: Any, keep: Callable[[bytes], bool]) -> None:
    """Every RTP packet `transport` (a WebRtcTransport) sends, forwarded media
    (`forward_rtp`) or whole packets (`send_rtp`, e.g. retransmissions), is
    shown to `keep` first as plain RTP; False loses it on the way."""
    from media.rtp import FIRST_BYTE, RTP_HEADER

    send, forward = transport.send_rtp, transport.forward_rtp
    transport.fast_path = False  # forwarded packets then go through forward_rtp too

    def send_rtp(data: bytes) -> bool:
        return send(data) if keep(data) else True

    def forward_rtp(b1: int, seq: int, ts: int, ssrc: int, tail: bytes) -> bool:
        if keep(RTP_HEADER.pack(FIRST_BYTE, b1, seq, ts, ssrc) + tail):
            return bool(forward(b1, seq, ts, ssrc, tail))
        return True

    transport.send_rtp = send_rtp
    transport.forward_rtp = forward_rtp
