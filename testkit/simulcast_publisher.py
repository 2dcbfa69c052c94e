"""A publisher that sends VP8 simulcast the way a browser does, for tests and benchmarks.

aiortc cannot publish simulcast, so this client uses the SFU's own transport (ICE + DTLS +
SRTP, media/transport.py) in the client's role, offers `a=rid`/`a=simulcast` like Chrome
and sends real VP8 (pre-encoded at three sizes, one keyframe each) on one SSRC per layer:
* the first packets of each SSRC carry the mid and rid header extensions (the RTX SSRC:
  mid and repaired rid), until a receiver report from the server acknowledges the SSRC,
  as libwebrtc stops sending them;
* each layer numbers its pictures (15-bit PictureID) and TL0PICIDX on its own and has its
  own RTP timestamp origin; sender reports map all of them to one NTP clock;
* a PLI for a layer's SSRC restarts that layer at its keyframe; a NACK is answered with RTX.
Faults a test can cause: a layer not sent (`sending`), a layer's packets naming another rid
(`rid_on_wire`), a new SSRC mid-call (`new_ssrc`).
"""

from __future__ import annotations

import asyncio
import fractions
import random
import struct
import time
from dataclasses import dataclass

import av
from aiortc import RTCCertificate
from aiortc.rtp import (
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    AnyRtcpPacket,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSenderInfo,
    RtcpSrPacket,
)

from media import MediaConfig, Peer, PublishResult
from media.rtcp import build_sender_reports
from media.sdp import parse, remote_transport
from media.transport import WebRtcTransport, random_ssrc
from media.types import CloseReason, Direction, TransportState
from testkit.aiortc_clients import FPS, _frames

SIZES = ((80, 60), (160, 120), (320, 240))  # layer 0 (r0) to 2 (r2), low to high
MID_EXT, RID_EXT, RRID_EXT, TWCC_EXT = 4, 10, 11, 3
URI_TWCC = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
VP8_PT, RTX_PT = 96, 97
MAX_PAYLOAD = 1000
NTP_EPOCH = 2_208_988_800  # 1900 -> 1970
_CERT = RTCCertificate.generateCertificate()


@dataclass
class SimulcastMedia:
    """Per layer, low to high: a loop of VP8 frames, the first the only keyframe."""

    layers: list[list[bytes]]


def encode_simulcast(seconds: float = 2.0, sizes: tuple[tuple[int, int], ...] = SIZES,
                     bitrates: tuple[int, ...] | None = None) -> SimulcastMedia:
    """`sizes` low to high; each layer's target bit rate is `bitrates` (default: 100 kbit/s
    per 80 pixels of width)."""
    frames = _frames(int(seconds * FPS))
    layers = []
    for n, (width, height) in enumerate(sizes):
        codec = av.CodecContext.create("libvpx", "w")
        codec.width, codec.height, codec.pix_fmt = width, height, "yuv420p"
        codec.time_base = fractions.Fraction(1, FPS)
        codec.framerate = fractions.Fraction(FPS)
        codec.bit_rate = bitrates[n] if bitrates else 100_000 * width // 80
        codec.gop_size = 10_000
        codec.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
        out = []
        for frame in frames:
            scaled = frame.reformat(width=width, height=height)
            out += [bytes(p) for p in codec.encode(scaled)]  # type: ignore[attr-defined]
        out += [bytes(p) for p in codec.encode(None)]  # type: ignore[attr-defined]
        layers.append(out)
    return SimulcastMedia(layers)


def _ext_block(elements: list[tuple[int, bytes]]) -> bytes:
    body = b"".join(bytes(((i << 4) | (len(v) - 1),)) + v for i, v in elements)
    body += b"\x00" * (-len(body) % 4)
    return struct.pack("!HH", 0xBEDE, len(body) // 4) + body


class _Layer:
    def __init__(self, index: int, rid: str, frames: list[bytes]) -> None:
        self.index = index
        self.rid = rid
        self.frames = frames
        self.ssrc = random_ssrc()
        self.rtx_ssrc = random_ssrc()
        self.seq = random.randint(0, 0xFFFF)
        self.rtx_seq = random.randint(0, 0xFFFF)
        self.ts_base = random.getrandbits(32)
        self.pid = random.randint(0, 0x7FFF)
        self.tl0 = random.randint(0, 0xFF)
        self.frame = 0
        self.acked: set[int] = set()  # SSRCs the server's reports acknowledged
        self.history: dict[int, tuple[int, int, bytes]] = {}  # seq -> (marker, ts, payload)
        self.keyframes_sent = 0
        self.plis = 0


class _RawRtcpTransport(WebRtcTransport):
    """Keeps every RTCP packet as received (aiortc's parser refuses transport-cc feedback)."""

    raw_rtcp: list[tuple[float, bytes]]

    def _on_rtcp(self, data: bytes) -> None:
        self.raw_rtcp.append((time.monotonic(), data))
        super()._on_rtcp(data)


class SimulcastPublisher:
    """Publishes one simulcast camera through `peer` (its send transport). With
    `transport_cc`, it offers the transport-wide-cc extension and numbers every packet it
    sends (`twcc_sent`: transport-wide seq -> send time; one not sent, before the
    transport is up, keeps its number); the RTCP it receives is kept raw
    (`transport.raw_rtcp`)."""

    def __init__(self, peer: Peer, media: SimulcastMedia, config: MediaConfig,
                 rids: tuple[str, ...] = ("r0", "r1", "r2"), transport_cc: bool = False) -> None:
        self.peer = peer
        self.config = config
        self.rids = rids
        self.transport_cc = transport_cc
        self.twcc_seq = random.randint(0, 0xFFFF)
        self.twcc_sent: dict[int, float] = {}
        self.layers = [_Layer(i, rid, media.layers[i]) for i, rid in enumerate(rids)]
        self.sending = [True] * len(rids)
        self.rid_on_wire = list(rids)
        # The offerer controls ICE: RECV is our transport's controlling role.
        self.transport = _RawRtcpTransport(Direction.RECV, config, _CERT, self)
        self.transport.raw_rtcp = []
        self.result: PublishResult | None = None
        self._start = time.monotonic()
        self._count = 0

    # -- signaling -------------------------------------------------------------------
    async def publish(self, sources: dict[str, str] | None = None) -> PublishResult:
        await self.transport.prepare()
        self.result = await self.peer.publish(self.offer(), sources)
        answer = parse(self.result.sdp, self.config)
        theirs = remote_transport(answer, answer.media)
        role = "server" if theirs.setup == "client" else "client"
        self.transport.start(theirs.ice, theirs.fingerprints, role)
        return self.result

    def offer(self) -> str:
        ice = self.transport.local_ice()
        fp = self.transport.fingerprints()[0]
        lines = ["v=0", f"o=- {random.getrandbits(40)} 1 IN IP4 127.0.0.1", "s=-", "t=0 0",
                 "a=group:BUNDLE 0", "a=msid-semantic: WMS sim",
                 f"m=video 9 UDP/TLS/RTP/SAVPF {VP8_PT} {RTX_PT}", "c=IN IP4 127.0.0.1",
                 "a=rtcp:9 IN IP4 0.0.0.0"]
        lines += [f"a=candidate:{c.to_sdp()}" for c in ice.candidates]
        lines += [f"a=ice-ufrag:{ice.ufrag}", f"a=ice-pwd:{ice.pwd}",
                  f"a=fingerprint:{fp.algorithm} {fp.value}", "a=setup:actpass", "a=mid:0",
                  f"a=extmap:{MID_EXT} urn:ietf:params:rtp-hdrext:sdes:mid",
                  f"a=extmap:{RID_EXT} urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
                  f"a=extmap:{RRID_EXT} "
                  "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
                  *([f"a=extmap:{TWCC_EXT} {URI_TWCC}",
                     f"a=rtcp-fb:{VP8_PT} transport-cc"] if self.transport_cc else []),
                  "a=sendonly", "a=msid:sim video", "a=rtcp-mux",
                  f"a=rtpmap:{VP8_PT} VP8/90000", f"a=rtcp-fb:{VP8_PT} nack",
                  f"a=rtcp-fb:{VP8_PT} nack pli", f"a=rtcp-fb:{VP8_PT} goog-remb",
                  f"a=rtpmap:{RTX_PT} rtx/90000", f"a=fmtp:{RTX_PT} apt={VP8_PT}"]
        lines += [f"a=rid:{rid} send" for rid in self.rids]
        lines.append(f"a=simulcast:send {';'.join(self.rids)}")
        return "\r\n".join(lines) + "\r\n"

    @property
    def producer_id(self) -> str:
        assert self.result is not None
        return self.result.added[0].id

    @property
    def connected(self) -> bool:
        return self.transport.state is TransportState.CONNECTED

    # -- media -----------------------------------------------------------------------
    async def run(self, seconds: float) -> None:
        """Send frames at FPS for `seconds` (call as a task; cancel to stop)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            due = self._start + self._count / FPS
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self.send_frame()

    def send_frame(self) -> None:
        """One frame on every layer being sent (same capture time)."""
        for layer in self.layers:
            if self.sending[layer.index]:
                self._send_layer_frame(layer)
            else:  # not sent, its clock still runs
                layer.frame += 1
        self._count += 1

    def new_ssrc(self, index: int) -> None:
        """Restart a layer on a new SSRC (its sequence numbers too), as after a re-offer."""
        layer = self.layers[index]
        layer.ssrc, layer.rtx_ssrc = random_ssrc(), random_ssrc()
        layer.seq = random.randint(0, 0xFFFF)
        layer.frame = 0  # the new stream starts at the keyframe

    def _send_layer_frame(self, layer: _Layer) -> None:
        index = layer.frame % len(layer.frames)
        data = layer.frames[index]
        if index == 0:
            layer.keyframes_sent += 1
        ts = (layer.ts_base + self._count * (90000 // FPS)) & 0xFFFFFFFF
        chunks = [data[i:i + MAX_PAYLOAD] for i in range(0, len(data), MAX_PAYLOAD)] or [b""]
        for n, chunk in enumerate(chunks):
            descriptor = bytes((0x90 if n == 0 else 0x80, 0xC0, 0x80 | (layer.pid >> 8),
                                layer.pid & 0xFF, layer.tl0))
            marker = 0x80 if n == len(chunks) - 1 else 0
            payload = descriptor + chunk
            layer.history[layer.seq] = (marker, ts, payload)
            self._send(layer, layer.ssrc, VP8_PT, marker, layer.seq, ts, payload,
                       RID_EXT, layer.ssrc)
            layer.seq = (layer.seq + 1) & 0xFFFF
        while len(layer.history) > 512:
            del layer.history[next(iter(layer.history))]
        layer.pid = (layer.pid + 1) & 0x7FFF
        layer.tl0 = (layer.tl0 + 1) & 0xFF
        layer.frame += 1

    def _send(self, layer: _Layer, ssrc: int, pt: int, marker: int, seq: int, ts: int,
              payload: bytes, rid_ext: int, acked_ssrc: int) -> None:
        header = struct.pack("!BBHII", 0x80, marker | pt, seq, ts, ssrc)
        elements = []
        twcc_seq = self.twcc_seq
        if self.transport_cc:
            elements.append((TWCC_EXT, struct.pack("!H", twcc_seq)))
        if acked_ssrc not in layer.acked:
            elements += [(MID_EXT, b"0"), (rid_ext, self.rid_on_wire[layer.index].encode())]
        if elements:
            header = bytes((0x90,)) + header[1:] + _ext_block(elements)
        if self.transport.send_rtp(header + payload) and self.transport_cc:
            self.twcc_sent[twcc_seq] = time.monotonic()
            self.twcc_seq = (twcc_seq + 1) & 0xFFFF

    def _retransmit(self, layer: _Layer, seqs: list[int]) -> None:
        for seq in seqs:
            entry = layer.history.get(seq & 0xFFFF)
            if entry is None:
                continue
            marker, ts, payload = entry
            self._send(layer, layer.rtx_ssrc, RTX_PT, marker, layer.rtx_seq, ts,
                       struct.pack("!H", seq & 0xFFFF) + payload, RRID_EXT, layer.rtx_ssrc)
            layer.rtx_seq = (layer.rtx_seq + 1) & 0xFFFF

    # -- TransportHandler ------------------------------------------------------------
    def on_rtp(self, transport: WebRtcTransport, data: bytes, now: float) -> None:
        pass

    def on_rtcp(self, transport: WebRtcTransport, packets: list[AnyRtcpPacket],
                now: float) -> None:
        by_ssrc = {layer.ssrc: layer for layer in self.layers}
        by_ssrc.update({layer.rtx_ssrc: layer for layer in self.layers})
        for packet in packets:
            if isinstance(packet, (RtcpRrPacket, RtcpSrPacket)):
                for block in packet.reports:
                    if (layer := by_ssrc.get(block.ssrc)) is not None:
                        layer.acked.add(block.ssrc)
            elif isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_PLI:
                if (layer := by_ssrc.get(packet.media_ssrc)) is not None:
                    layer.plis += 1
                    layer.frame -= layer.frame % len(layer.frames)  # back to the keyframe
            elif (isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK
                  and (layer := by_ssrc.get(packet.media_ssrc)) is not None):
                self._retransmit(layer, list(packet.lost))

    def on_rtcp_tick(self, transport: WebRtcTransport, now: float) -> None:
        """A sender report per layer sent: one NTP clock, each layer's own RTP origin."""
        wall = time.time()
        ntp = int((wall + NTP_EPOCH) * (1 << 32))
        elapsed = time.monotonic() - self._start
        reports = [RtcpSrPacket(ssrc=layer.ssrc, sender_info=RtcpSenderInfo(
            ntp_timestamp=ntp, rtp_timestamp=(layer.ts_base + int(elapsed * 90000))
            & 0xFFFFFFFF, packet_count=0, octet_count=0))
            for layer in self.layers if self.sending[layer.index]]
        for data in build_sender_reports(reports, self.transport.cname):
            transport.send_rtcp(data)

    def on_state(self, transport: WebRtcTransport, state: TransportState,
                 reason: CloseReason | None) -> None:
        pass

    async def close(self) -> None:
        await self.transport.close()
