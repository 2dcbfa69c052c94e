"""Fuzz the RTCP the SFU reads (media/rtcp.py): whatever a peer sends, parse_rtcp answers
packets or raises RtcpError, and what the SFU then reads from them (FIR entries, REMB)
answers or raises RtcpError: never struct.error or IndexError, which escaped as a logged
traceback per packet."""

from __future__ import annotations

import struct

import pytest
from aiortc.rtp import RtcpPsfbPacket
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from media import rtcp
from media.errors import MediaError, RtcpError

from .fuzz_strategies import mutated, rtcp_compound

FUZZ = settings(max_examples=800, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def test_a_remb_whose_count_lies_is_an_rtcp_error() -> None:
    """The fuzzer's crasher: aiortc's unpack_remb_fci raised struct.error."""
    fci = b"REMB" + bytes([3, 0, 0, 0]) + struct.pack("!I", 1)
    with pytest.raises(RtcpError):
        rtcp.remb(fci)
    assert rtcp.remb(b"REMB" + bytes([1, 4, 0, 10]) + struct.pack("!I", 7)) == (10 << 1, [7])
    assert issubclass(RtcpError, MediaError)


@FUZZ
@given(st.one_of(rtcp_compound(), rtcp_compound().flatmap(mutated), st.binary(max_size=80)))
def test_rtcp_parses_or_is_refused_with_rtcp_error(data: bytes) -> None:
    try:
        packets = rtcp.parse_rtcp(data)
    except RtcpError:
        return
    for packet in packets:
        if isinstance(packet, RtcpPsfbPacket):
            ssrcs = rtcp.fir_ssrcs(packet)
            assert all(0 <= s < 2**32 for s in ssrcs) and len(ssrcs) <= len(packet.fci) // 8
            try:
                bitrate, listed = rtcp.remb(packet.fci)
            except RtcpError:
                continue
            assert bitrate >= 0 and len(listed) == packet.fci[4]
