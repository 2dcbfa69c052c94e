"""In-memory stand-ins for unit tests of producers and consumers."""

from __future__ import annotations

import struct
from typing import Any

from aiortc.rtp import RtcpPacket

from media import MediaConfig
from media.consumer import Consumer
from media.fanout import LegPath
from media.producer import Producer
from media.rtp import FIRST_BYTE, RTP_HEADER, InPacket
from media.types import CloseReason, CodecInfo, Kind, Source


class FakeTransport:
    """Records what a producer/consumer sends instead of using the network."""

    rtcp_ssrc = 0xABCD

    def __init__(self) -> None:
        self.rtp: list[bytes] = []
        self.rtcp: list[bytes] = []
        self.accept = True
        self.leg_path = LegPath()  # no socket: the C fan-out hands every packet back
        self.rx_batch = None  # packets are forwarded at once

    def send_rtp(self, data: bytes) -> bool:
        if not self.accept:
            return False
        self.rtp.append(data)
        return True

    def forward_rtp(self, b1: int, seq: int, ts: int, ssrc: int, tail: bytes) -> bool:
        return self.send_rtp(RTP_HEADER.pack(FIRST_BYTE, b1, seq, ts, ssrc) + tail)

    def send_rtcp(self, data: bytes) -> None:
        self.rtcp.append(data)

    def rtcp_packets(self) -> list[Any]:
        return [p for data in self.rtcp for p in RtcpPacket.parse(data)]


def headers(data_list: list[bytes]) -> list[tuple[int, int, int, int]]:
    """(pt, seq, ts, ssrc) of RTP packets."""
    out = []
    for data in data_list:
        _, b1, seq, ts, ssrc = RTP_HEADER.unpack_from(data, 0)
        out.append((b1 & 0x7F, seq, ts, ssrc))
    return out


VP8 = CodecInfo(mime_type="video/VP8", clock_rate=90000)
OPUS = CodecInfo(mime_type="audio/opus", clock_rate=48000, channels=2)
# VP8 payload descriptor S=1 PID=0 then a frame tag with P=0 (keyframe) / P=1.
VP8_KEY = b"\x10\x00" + b"k" * 100
VP8_DELTA = b"\x10\x01" + b"d" * 100
VP8_CONT = b"\x00" + b"c" * 100


def make_producer(kind: Kind = Kind.VIDEO, transport: FakeTransport | None = None,
                  config: MediaConfig | None = None, **kwargs: Any) -> Producer:
    closed: list[CloseReason] = []
    params: dict[str, Any] = {
        "peer_id": "pub", "transport": transport or FakeTransport(), "mid": "0", "kind": kind,
        "source": Source.default_for(kind), "codec": VP8 if kind is Kind.VIDEO else OPUS,
        "pt": 96 if kind is Kind.VIDEO else 111,
        "rtx_pt": 97 if kind is Kind.VIDEO else None, "ssrc": 1111, "rtx_ssrc": 2222,
        "config": config or MediaConfig(ice_addresses=("127.0.0.1",)),
        "max_bitrate_bps": 1_000_000, "nack": True, "remb": True, "audio_level_ext": 1,
        "app_data": {}, "on_audio_level": None, "on_close": lambda p, r: closed.append(r)}
    params.update(kwargs)
    return Producer(**params)


def packet(seq: int, ts: int = 0, payload: bytes = VP8_DELTA, ssrc: int = 1111,
           pt: int = 96, marker: int = 0, ext: bytes = b"", ext_profile: int = 0) -> InPacket:
    return InPacket(ssrc, pt, marker, seq & 0xFFFF, ts, ext_profile, ext, payload)


def rtx_packet(osn: int, seq: int, ts: int = 0, payload: bytes = VP8_DELTA) -> InPacket:
    return InPacket(2222, 97, 0, seq, ts, 0, b"", struct.pack("!H", osn) + payload)


class SimulcastLeg:
    """A three-layer simulcast producer (rids r0-r2) and one consumer of it on fake
    transports (the Python path: no socket); tests feed `producer` and read `down`."""

    def __init__(self) -> None:
        self.up = FakeTransport()
        self.producer: Producer = make_producer(transport=self.up, rids=("r0", "r1", "r2"))
        self.down = FakeTransport()
        self.consumer = Consumer(
            peer_id="sub", producer=self.producer, transport=self.down,  # type: ignore[arg-type]
            mid="0", pt=100, rtx_pt=101, ssrc=5555, rtx_ssrc=6666, stream_id="pub-av",
            on_close=lambda c, r: None)
        self.consumer.apply_answer(100, 101, nack=True)
        self.consumer.set_active(True)
        self.producer.add_consumer(self.consumer)
