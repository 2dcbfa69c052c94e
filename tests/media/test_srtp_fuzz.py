"""Fuzz the SRTP-in and SRTP-out buffers (media/srtp.py): libsrtp works in place in a
2048-byte C buffer per thread, so every length matters. Datagrams of every size from 0 to
past the buffer, valid ones, damaged ones and junk: unprotect answers the packet or None
(never raises, never writes past the buffer: the next valid packet still round-trips), and
protect refuses what would not fit instead of overflowing."""

from __future__ import annotations

import contextlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pylibsrtp import Policy

from media import srtp
from media.rtp import RTP_HEADER, audio_ext_block
from media.srtp import SrtpIn, SrtpOut

from .fuzz_strategies import mutated, rtcp_compound, rtp_packet
from .test_srtp import PROFILES, _key, _session

FUZZ = settings(max_examples=400, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SIZES = st.sampled_from([0, 1, 11, 12, 13, srtp.MAX_PACKET - 1, srtp.MAX_PACKET,
                         srtp.MAX_PACKET + 1, srtp.BUFFER_SIZE, srtp.BUFFER_SIZE + 1, 9000])


class Link:
    """A sender's and a receiver's session on one key, and our in-place wrappers."""

    def __init__(self, profile: int) -> None:
        key = _key(profile)
        self.sender = _session(key, profile)
        self.incoming = SrtpIn(_session(key, profile, Policy.SSRC_ANY_INBOUND))
        self.outgoing = SrtpOut(_session(key, profile))
        self.seq = 0

    def probe(self) -> None:
        """A fresh valid packet still round-trips: nothing around the buffer was damaged."""
        self.seq += 1
        plain = RTP_HEADER.pack(0x80, 96, (60000 + self.seq) & 0xFFFF, self.seq, 4242) + b"ok"
        assert self.incoming.unprotect(self.sender.protect(plain)) == plain


LINKS = [Link(profile) for profile in PROFILES]


def junk_of_size(size: int, fill: int) -> bytes:
    return bytes([0x80 | (fill & 0x3F)]) + bytes([fill]) * max(size - 1, 0) if size else b""


@FUZZ
@given(st.sampled_from(range(len(PROFILES))), st.one_of(
    rtp_packet(), rtp_packet().flatmap(mutated), st.binary(max_size=64),
    st.builds(junk_of_size, SIZES, st.integers(0, 255))), st.booleans())
def test_unprotect_answers_the_packet_or_none(link_index: int, data: bytes,
                                              protect_first: bool) -> None:
    link = LINKS[link_index]
    if protect_first and 12 <= len(data) <= srtp.MAX_PACKET - 64:
        with contextlib.suppress(Exception):  # libsrtp refuses some (e.g. not version 2)
            data = link.sender.protect(data)
    for result in (link.incoming.unprotect(data), link.incoming.unprotect_rtcp(data)):
        assert result is None or (isinstance(result, bytes) and len(result) <= len(data))
    link.probe()


@FUZZ
@given(st.sampled_from(range(len(PROFILES))), st.one_of(rtcp_compound(), st.binary(max_size=64)),
       st.integers(0, 40))
def test_srtcp_damaged_or_not_never_raises(link_index: int, plain: bytes, cut: int) -> None:
    link = LINKS[link_index]
    try:
        data = link.sender.protect_rtcp(plain) if len(plain) >= 8 else plain
    except Exception:  # noqa: BLE001 - libsrtp refuses what is not RTCP
        data = plain
    for candidate in (data, data[:max(len(data) - cut, 0)], data + bytes(cut)):
        result = link.incoming.unprotect_rtcp(candidate)
        assert result is None or isinstance(result, bytes)
    link.probe()


@FUZZ
@given(st.sampled_from(range(len(PROFILES))), SIZES | st.integers(0, 2100))
def test_protect_refuses_what_would_not_fit(link_index: int, size: int) -> None:
    link = LINKS[link_index]
    # With X=1 the tail starts with its extension block, as every forwarded tail does.
    first, tail = (0x90, audio_ext_block(5) + bytes(size - 8)) if size >= 8 else (0x80,
                                                                                   bytes(size))
    out = link.outgoing.rtp(first, 96, 1, 2, 3, tail)
    assert (out is None) == (12 + size > srtp.MAX_PACKET)
    whole = link.outgoing.protect(RTP_HEADER.pack(first, 96, 1, 2, 3) + tail)
    assert (whole is None) == (12 + size > srtp.MAX_PACKET)
    link.probe()
