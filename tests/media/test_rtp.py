from __future__ import annotations

import struct

from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket

from media.rtp import (
    EXT_ABS_SEND_TIME,
    URI_AUDIO_LEVEL,
    URI_MID,
    ForwardPacket,
    SeqUnwrapper,
    StreamRewriter,
    audio_ext_block,
    audio_level,
    find_mid,
    parse_rtp,
    video_ext_block,
)


def aiortc_packet(**kwargs: object) -> bytes:
    """Serialise with aiortc, which browsers interoperate with, as reference."""
    ext_map = HeaderExtensionsMap()
    ext_map.configure(RTCRtpParameters(headerExtensions=[
        RTCRtpHeaderExtensionParameters(id=4, uri=URI_MID),
        RTCRtpHeaderExtensionParameters(id=9, uri=URI_AUDIO_LEVEL)]))
    pkt = RtpPacket(payload_type=111, sequence_number=65535, timestamp=123456,
                    ssrc=0xDEADBEEF, payload=b"opus-data", marker=1)
    pkt.extensions.mid = "a1"
    pkt.extensions.audio_level = (True, 33)
    for key, value in kwargs.items():
        setattr(pkt, key, value)
    return pkt.serialize(ext_map)


def test_parse_reads_header_extensions_and_payload() -> None:
    pkt = parse_rtp(aiortc_packet())
    assert pkt is not None
    assert (pkt.ssrc, pkt.pt, pkt.marker, pkt.seq, pkt.ts) == (0xDEADBEEF, 111, 0x80, 65535, 123456)
    assert pkt.payload == b"opus-data"
    assert find_mid(pkt, 4) == "a1"
    assert audio_level(pkt, 9) == 33
    assert audio_level(pkt, 5) is None


def test_parse_strips_padding_and_rejects_garbage() -> None:
    data = aiortc_packet(padding_size=4)
    pkt = parse_rtp(data)
    assert pkt is not None and pkt.payload == b"opus-data"
    assert parse_rtp(b"\x80\x60") is None  # short
    assert parse_rtp(b"\x40" + bytes(20)) is None  # version 1
    assert parse_rtp(b"\x90" + bytes(11) + b"\xbe\xde\x00\x09") is None  # truncated ext
    assert parse_rtp(b"\xa0" + bytes(11) + b"\x00\x00\x00\xff") is None  # bad padding


def test_forward_packet_build_matches_aiortc_parser() -> None:
    tail = video_ext_block(0x123456) + b"payload"
    fp = ForwardPacket(70000, 1000, 0x80, tail, True, 0, 0.0)
    data = fp.build(101, 7, 99, 0x01020304)
    ext_map = HeaderExtensionsMap()
    ext_map.configure(RTCRtpParameters(headerExtensions=[RTCRtpHeaderExtensionParameters(
        id=EXT_ABS_SEND_TIME, uri="http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time")]))
    parsed = RtpPacket.parse(data, ext_map)
    assert (parsed.payload_type, parsed.sequence_number, parsed.timestamp, parsed.ssrc,
            parsed.marker) == (101, 7, 99, 0x01020304, 1)
    assert parsed.extensions.abs_send_time == 0x123456
    assert parsed.payload == b"payload"
    rtx = RtpPacket.parse(fp.build_rtx(102, 5, 99, 0x0A0B0C0D, osn=7), ext_map)
    assert rtx.payload == struct.pack("!H", 7) + b"payload"
    assert (rtx.payload_type, rtx.ssrc) == (102, 0x0A0B0C0D)


def test_rtx_of_a_numbered_packet_puts_the_osn_after_its_two_word_extension_block() -> None:
    """A packet numbered for transport-cc (media/fanout.twcc_tail) has a 12-byte block:
    the retransmission's original sequence number goes after all of it."""
    from media.fanout import new_twcc, twcc_tail

    fp = ForwardPacket(70000, 1000, 0, video_ext_block(0x123456) + b"payload", True, 0, 0.0)
    tail = twcc_tail(fp.tail, new_twcc(4), 1.0)
    ext_map = HeaderExtensionsMap()
    ext_map.configure(RTCRtpParameters(headerExtensions=[
        RTCRtpHeaderExtensionParameters(
            id=EXT_ABS_SEND_TIME, uri="http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"),
        RTCRtpHeaderExtensionParameters(
            id=4, uri="http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01")]))
    rtx = RtpPacket.parse(fp.build_rtx(102, 5, 99, 0x0A0B0C0D, osn=7, tail=tail), ext_map)
    assert rtx.payload == struct.pack("!H", 7) + b"payload"
    assert rtx.extensions.abs_send_time == 0x123456
    assert rtx.extensions.transport_sequence_number == 0


def test_audio_ext_block_carries_level() -> None:
    fp = ForwardPacket(1, 0, 0, audio_ext_block(42) + b"x", False, 0, 0.0)
    pkt = parse_rtp(fp.build(111, 1, 0, 5))
    assert pkt is not None and audio_level(pkt, 2) == 42 and pkt.payload == b"x"


def test_seq_unwrapper_handles_wrap_and_reorder() -> None:
    u = SeqUnwrapper()
    first = u.unwrap(65534)
    assert u.unwrap(65535) == first + 1
    assert u.unwrap(0) == first + 2
    assert u.unwrap(65535) == first + 1  # late packet
    assert u.unwrap(2) == first + 4
    assert u.highest == first + 4


def fp(ext: int, ts: int, epoch: int = 0) -> ForwardPacket:
    return ForwardPacket(ext, ts, 0, b"", True, epoch, 0.0)


def test_rewriter_is_continuous_across_source_switch() -> None:
    rw = StreamRewriter(90000)
    rw.sync(fp(1000, 5000), now=10.0)
    seq0, ts0 = rw.map(fp(1000, 5000), 10.0)  # type: ignore[misc]
    seq1, ts1 = rw.map(fp(1001, 8000), 10.033)  # type: ignore[misc]
    assert (seq1 - seq0) & 0xFFFF == 1 and (ts1 - ts0) & 0xFFFFFFFF == 3000
    # A new source with unrelated numbers, 0.5 s later.
    rw.sync(fp(777, 4_000_000_000, epoch=1), now=10.533)
    seq2, ts2 = rw.map(fp(777, 4_000_000_000, epoch=1), 10.533)  # type: ignore[misc]
    assert (seq2 - seq1) & 0xFFFF == 1
    assert abs(((ts2 - ts1) & 0xFFFFFFFF) - 45000) <= 1
    assert rw.map(fp(776, 0, epoch=1), 10.6) is None  # predates the switch
    assert rw.source_seq(seq2) == 777
    assert rw.source_seq(seq1) is None


def test_rewriter_maps_retransmissions_back() -> None:
    rw = StreamRewriter(48000)
    rw.sync(fp(65530, 0), 1.0)
    outs = [rw.map(fp(65530 + i, i * 960), 1.0)[0] for i in range(10)]  # type: ignore[index]
    for i, out in enumerate(outs):
        assert rw.source_seq(out) == 65530 + i
