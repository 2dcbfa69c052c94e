"""Fuzz the RTP reading path (media/rtp.py, the keyframe detectors of media/codecs.py, the
producer that forwards what they read): hostile packets with CSRCs, header extensions and
padding whose lengths lie, zero and maximum sizes. parse_rtp answers None for what it cannot
use (its contract: it never raises), and what it accepts is exactly the packet's payload;
nothing downstream raises, and every packet a consumer sends is well formed."""

from __future__ import annotations

import struct

from aiortc.rtp import RtpPacket
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from media.codecs import h264_keyframe, vp8_keyframe
from media.rtp import RTP_HEADER, audio_level, find_extension, find_mid, parse_rtp
from media.types import Kind

from .fakes import VP8_KEY, make_producer
from .fuzz_strategies import rtp_packet
from .test_producer import attach

FUZZ = settings(max_examples=600, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
datagrams = st.one_of(rtp_packet(), rtp_packet(), st.binary(max_size=64))


def expected_layout(data: bytes) -> tuple[int, int, int] | None:
    """(extension start, payload start, payload end) as RFC 3550 lays the packet out, or
    None where the packet cannot be read (too short, version, lengths past the end)."""
    if len(data) < 12 or data[0] >> 6 != 2:
        return None
    start = ext_start = 12 + 4 * (data[0] & 0x0F)
    if data[0] & 0x10:
        if len(data) < start + 4:
            return None
        ext_start = start + 4
        start = ext_start + 4 * struct.unpack_from("!H", data, ext_start - 2)[0]
    end = len(data)
    if data[0] & 0x20:
        pad = data[-1]
        if pad == 0 or pad > end - start:
            return None
        end -= pad
    return (ext_start, start, end) if start <= end else None


@FUZZ
@given(datagrams)
def test_parse_rtp_reads_exactly_the_payload_or_answers_none(data: bytes) -> None:
    pkt = parse_rtp(data)
    layout = expected_layout(data)
    if layout is None:
        assert pkt is None
        return
    assert pkt is not None
    ext_start, start, end = layout
    assert pkt.payload == data[start:end]
    assert (pkt.ssrc, pkt.seq, pkt.pt, pkt.marker) == (
        struct.unpack_from("!I", data, 8)[0], struct.unpack_from("!H", data, 2)[0],
        data[1] & 0x7F, data[1] & 0x80)
    assert pkt.ext == (data[ext_start:start] if data[0] & 0x10 else b"")
    try:
        reference = RtpPacket.parse(data)  # aiortc, which browsers interoperate with
    except ValueError:
        return
    assert reference.payload == pkt.payload


@FUZZ
@given(st.integers(0, 0xFFFF), st.binary(max_size=300), st.integers(0, 255))
def test_header_extension_lookups_never_raise_nor_read_past_the_block(
        profile: int, ext: bytes, ext_id: int) -> None:
    value = find_extension(profile, ext, ext_id)
    assert value is None or value in ext
    pkt = parse_rtp(RTP_HEADER.pack(0x90, 96, 1, 2, 3) + struct.pack("!HH", profile, 0))
    assert pkt is not None
    pkt.ext_profile, pkt.ext = profile, ext
    level = audio_level(pkt, ext_id)
    assert level is None or 0 <= level <= 127
    mid = find_mid(pkt, ext_id)
    assert mid is None or mid.isascii()


@FUZZ
@given(st.binary(max_size=80))
def test_keyframe_detectors_never_raise(payload: bytes) -> None:
    assert vp8_keyframe(payload) in (True, False)
    assert h264_keyframe(payload) in (True, False)


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.sampled_from([Kind.VIDEO, Kind.AUDIO]),
       st.lists(st.tuples(rtp_packet(ssrcs=[1111, 2222], pts=[96, 97, 111]), st.booleans()),
                max_size=25))
def test_a_producer_forwards_hostile_streams_as_well_formed_packets(
        kind: Kind, stream: list[tuple[bytes, bool]]) -> None:
    producer = make_producer(kind, pt=96 if kind is Kind.VIDEO else 111,
                             rtx_pt=97 if kind is Kind.VIDEO else None)
    _, down = attach(producer, rtx=kind is Kind.VIDEO)
    payloads = {VP8_KEY}
    key = parse_rtp(RTP_HEADER.pack(0x80, 96, 0, 0, 1111) + VP8_KEY)
    assert key is not None
    if kind is Kind.VIDEO:
        producer.receive_rtp(key, 0.0)  # consumers start at a keyframe
    for i, (data, as_rtx) in enumerate(stream):
        pkt = parse_rtp(data)
        if pkt is None:
            continue
        payloads.add(pkt.payload)
        if len(pkt.payload) >= 2:
            payloads.add(pkt.payload[2:])  # what an RTX packet carries
        now = 0.01 * (i + 1)
        if as_rtx and kind is Kind.VIDEO:
            producer.receive_rtx(pkt, now)
        else:
            producer.receive_rtp(pkt, now)
    for sent in down.rtp:
        out = parse_rtp(sent)
        assert out is not None and out.ssrc == 5555 and out.pt == 100
        assert out.payload in payloads
