"""media.srtp calls libsrtp through pylibsrtp's cffi binding: fail loudly if that
binding changes, and prove the output is exactly what pylibsrtp's own protect makes."""

from __future__ import annotations

import gc
import os

import pylibsrtp
import pytest
from pylibsrtp import Policy, Session

from media import srtp
from media.rtp import FIRST_BYTE, RTP_HEADER
from media.srtp import SrtpIn, SrtpOut
from testkit.aiortc_clients import wait_for

from .conftest import make_config
from .transport_pair import connected_pair

PROFILES = [Policy.SRTP_PROFILE_AES128_CM_SHA1_80, Policy.SRTP_PROFILE_AEAD_AES_128_GCM,
            Policy.SRTP_PROFILE_AEAD_AES_256_GCM]


def _session(key: bytes, profile: int, ssrc_type: int = Policy.SSRC_ANY_OUTBOUND) -> Session:
    policy = Policy(key=key, ssrc_type=ssrc_type, srtp_profile=profile)
    policy.allow_repeat_tx = True  # as aiortc's tx policy
    return Session(policy)


def _key(profile: int) -> bytes:
    lib = srtp._lib
    size = (lib.srtp_profile_get_master_key_length(profile)
            + lib.srtp_profile_get_master_salt_length(profile))
    return os.urandom(size)


def test_pylibsrtp_binding_is_what_media_srtp_expects() -> None:
    assert pylibsrtp.__version__.startswith(srtp.SUPPORTED_PYLIBSRTP), pylibsrtp.__version__
    owners = {"pylibsrtp": pylibsrtp,
              "pylibsrtp.Session instance": _session(_key(PROFILES[0]), PROFILES[0])}
    for owner, name in srtp.PRIVATE_ATTRIBUTES:
        assert hasattr(owners[owner], name), f"{owner}.{name} is gone"
    ffi, lib = srtp._ffi, srtp._lib
    for name, ctype in srtp.C_SIGNATURES.items():
        assert ffi.getctype(ffi.typeof(getattr(lib, name))) == ctype, name
    session = owners["pylibsrtp.Session instance"]
    assert ffi.getctype(ffi.typeof(session._srtp)) == "struct srtp_ctx_t_ * *"
    assert lib.srtp_err_status_ok == 0
    assert srtp.MAX_TRAILER >= 16 + 4  # GCM tag + SRTCP index at least


@pytest.mark.parametrize("profile", PROFILES)
def test_output_is_byte_for_byte_pylibsrtp_protect(profile: int) -> None:
    key = _key(profile)
    reference, ours = _session(key, profile), _session(key, profile)
    out = SrtpOut(ours)
    receiver = _session(key, profile, Policy.SSRC_ANY_INBOUND)
    tails = [b"\xbe\xde\x00\x01\x32\x01\x02\x03" + bytes(range(n % 256)) * (1 + n // 256)
             for n in (0, 1, 100, 1100)]
    for seq, tail in enumerate(tails * 3):
        header = (0x80 | 96, seq, seq * 3000, 0x1234)
        plain = RTP_HEADER.pack(FIRST_BYTE, *header) + tail
        got = out.rtp(FIRST_BYTE, *header, tail)
        assert got == reference.protect(plain)
        assert receiver.unprotect(got) == plain
        whole = out.protect(plain[:12] + b"\x00" * 4)  # send_rtp path, an RTX-like resend
        assert whole == reference.protect(plain[:12] + b"\x00" * 4)
    rtcp = bytes.fromhex("80c9000100001234")  # empty RR
    assert out.protect_rtcp(rtcp) == reference.protect_rtcp(rtcp)
    assert receiver.unprotect_rtcp(out.protect_rtcp(rtcp)) == rtcp
    assert out.errors == 0


@pytest.mark.parametrize("profile", PROFILES)
def test_unprotect_is_pylibsrtps_and_refuses_replays_and_damage(profile: int) -> None:
    key = _key(profile)
    sender = _session(key, profile)
    reference = _session(key, profile, Policy.SSRC_ANY_INBOUND)
    incoming = SrtpIn(_session(key, profile, Policy.SSRC_ANY_INBOUND))
    for seq in range(5):
        plain = RTP_HEADER.pack(0x80, 96, seq, seq * 3000, 0x1234) + bytes(range(seq * 50))
        packet = sender.protect(plain)
        assert incoming.unprotect(packet) == reference.unprotect(packet) == plain
    assert incoming.unprotect(packet) is None  # replayed
    assert incoming.unprotect(packet[:-1] + bytes([packet[-1] ^ 1])) is None  # damaged tag
    assert incoming.unprotect(b"x" * (srtp.MAX_PACKET + 1)) is None
    rtcp = bytes.fromhex("80c9000100001234")
    assert incoming.unprotect_rtcp(sender.protect_rtcp(rtcp)) == rtcp
    assert incoming.errors == 3


def test_too_long_or_refused_packets_are_dropped_not_raised() -> None:
    profile = PROFILES[2]
    out = SrtpOut(_session(_key(profile), profile))
    ext = b"\xbe\xde\x00\x01\x32\x00\x00\x01"
    assert out.rtp(FIRST_BYTE, 96, 1, 2, 3, ext + b"x" * (srtp.MAX_PACKET - 20)) is not None
    assert out.rtp(FIRST_BYTE, 96, 1, 2, 3, ext + b"x" * (srtp.MAX_PACKET - 19)) is None
    assert out.protect(b"x" * (srtp.MAX_PACKET + 1)) is None
    assert out.rtp(FIRST_BYTE, 96, 1, 2, 3, b"\xbe\xde\x7f\xff") is None  # bad extension
    assert out.errors == 3


def test_keeps_the_session_context_alive() -> None:
    profile = PROFILES[1]
    key = _key(profile)
    out = SrtpOut(_session(key, profile))  # the only reference to the Session
    gc.collect()
    receiver = _session(key, profile, Policy.SSRC_ANY_INBOUND)
    tail = b"\xbe\xde\x00\x01\x32\x00\x00\x01payload"
    got = out.rtp(FIRST_BYTE, 96, 7, 8, 9, tail)
    assert got is not None
    assert receiver.unprotect(got) == RTP_HEADER.pack(FIRST_BYTE, 96, 7, 8, 9) + tail


async def test_forward_rtp_crosses_a_real_dtls_link() -> None:
    server, _, client, crec = await connected_pair(make_config())
    try:
        tails = [b"\xbe\xde\x00\x01\x32\x00\x00\x01" + bytes([i]) * 900 for i in range(5)]
        for i, tail in enumerate(tails):
            assert server.forward_rtp(0x80 | 96 if i == 4 else 96, 100 + i, 9000 * i, 77, tail)
        expected = [RTP_HEADER.pack(FIRST_BYTE, 0x80 | 96 if i == 4 else 96, 100 + i,
                                    9000 * i, 77) + tail for i, tail in enumerate(tails)]
        await wait_for(lambda: len(crec.rtp) == len(expected), 2)
        assert crec.rtp == expected  # unprotected by aiortc's own receiving session
        assert server.packets_sent == 5 and server.packets_dropped == 0
    finally:
        await server.close()
        await client.close()
    assert not server.forward_rtp(96, 1, 2, 3, b"x")  # closed: dropped, no error


def test_legs_share_one_buffer_per_thread() -> None:
    import threading

    profile = PROFILES[2]
    key_a, key_b = _key(profile), _key(profile)
    a, b = SrtpOut(_session(key_a, profile)), SrtpOut(_session(key_b, profile))
    other: list[SrtpOut] = []
    thread = threading.Thread(target=lambda: other.append(SrtpOut(_session(key_a, profile))))
    thread.start()
    thread.join()
    assert a._cdata is b._cdata and other[0]._cdata is not a._cdata
    tail = b"\xbe\xde\x00\x01\x32\x00\x00\x01" + b"z" * 500
    out_a = a.rtp(FIRST_BYTE, 96, 1, 2, 3, tail)
    out_b = b.rtp(FIRST_BYTE, 96, 1, 2, 3, tail[:100])
    assert out_a is not None and out_b is not None  # bytes: the buffer's reuse cannot touch them
    plain = RTP_HEADER.pack(FIRST_BYTE, 96, 1, 2, 3)
    assert _session(key_a, profile, Policy.SSRC_ANY_INBOUND).unprotect(out_a) == plain + tail
    assert _session(key_b, profile, Policy.SSRC_ANY_INBOUND).unprotect(out_b) == plain + tail[:100]
