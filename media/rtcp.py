"""RTCP the SFU writes, and the bits it reads beyond aiortc's parser.

aiortc's classes serialise SR, RR, SDES and PLI; NACK is packed here because
aiortc's packer breaks when the lost sequence numbers wrap, and FIR's FCI is
parsed here because aiortc leaves it raw.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterable, Sequence

from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_PLI,
    RTCP_RTPFB,
    RTCP_RTPFB_NACK,
    AnyRtcpPacket,
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpSdesPacket,
    RtcpSenderInfo,
    RtcpSourceInfo,
    RtcpSrPacket,
    pack_remb_fci,
    pack_rtcp_packet,
    unpack_remb_fci,
)

from .errors import RtcpError

NTP_UNIX_OFFSET = 2208988800
SDES_CNAME = 1
MAX_REPORTS = 31  # report blocks per SR/RR (5-bit count)

__all__ = [
    "RtcpReceiverInfo",
    "RtcpSenderInfo",
    "RtcpSrPacket",
    "build_nack",
    "build_pli",
    "build_receiver_reports",
    "build_remb",
    "build_sender_reports",
    "empty_rr",
    "fir_ssrcs",
    "ntp_now",
    "parse_rtcp",
    "remb",
]


def ntp_now() -> int:
    """64-bit NTP timestamp of the wall clock."""
    return int((time.time() + NTP_UNIX_OFFSET) * (1 << 32))


def ntp_middle(ntp: int) -> int:
    """The middle 32 bits, as echoed in LSR fields."""
    return (ntp >> 16) & 0xFFFFFFFF


def empty_rr(sender_ssrc: int) -> bytes:
    # Feedback must ride in a compound packet that starts with SR/RR unless
    # reduced-size RTCP was negotiated (RFC 5506); an empty RR is 8 bytes.
    return bytes(RtcpRrPacket(ssrc=sender_ssrc))


def build_nack(sender_ssrc: int, media_ssrc: int, lost: Sequence[int]) -> bytes:
    """Generic NACK (RFC 4585) for extended sequence numbers, sorted or not."""
    fci = b""
    items = sorted(set(lost))
    i = 0
    while i < len(items):
        pid = items[i]
        blp = 0
        i += 1
        while i < len(items) and items[i] - pid <= 16:
            blp |= 1 << (items[i] - pid - 1)
            i += 1
        fci += struct.pack("!HH", pid & 0xFFFF, blp)
    body = struct.pack("!LL", sender_ssrc, media_ssrc) + fci
    return empty_rr(sender_ssrc) + pack_rtcp_packet(RTCP_RTPFB, RTCP_RTPFB_NACK, body)


def build_pli(sender_ssrc: int, media_ssrc: int) -> bytes:
    pli = RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=sender_ssrc, media_ssrc=media_ssrc)
    return empty_rr(sender_ssrc) + bytes(pli)


def build_remb(sender_ssrc: int, bitrate: int, ssrcs: list[int]) -> bytes:
    return bytes(RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=sender_ssrc, media_ssrc=0,
                                fci=pack_remb_fci(bitrate, ssrcs)))


def build_receiver_reports(sender_ssrc: int, blocks: Sequence[RtcpReceiverInfo]) -> bytes:
    """RR packets for `blocks`; one empty RR if none, so feedback can follow."""
    if not blocks:
        return empty_rr(sender_ssrc)
    out = b""
    for start in range(0, len(blocks), MAX_REPORTS):
        out += bytes(RtcpRrPacket(ssrc=sender_ssrc,
                                  reports=list(blocks[start:start + MAX_REPORTS])))
    return out


def build_sender_reports(reports: Sequence[RtcpSrPacket], cname: str,
                         per_packet: int = 8) -> Iterable[bytes]:
    """Compound SR + SDES(CNAME) packets, a few streams each to fit an MTU."""
    for start in range(0, len(reports), per_packet):
        chunk = reports[start:start + per_packet]
        sdes = RtcpSdesPacket(chunks=[
            RtcpSourceInfo(ssrc=sr.ssrc, items=[(SDES_CNAME, cname.encode())])
            for sr in chunk])
        yield b"".join(bytes(sr) for sr in chunk) + bytes(sdes)


def parse_rtcp(data: bytes) -> list[AnyRtcpPacket]:
    """A (compound) RTCP packet from a peer; RtcpError if aiortc's parser refuses it."""
    try:
        return RtcpPacket.parse(data)
    except Exception as exc:  # noqa: BLE001 - aiortc raises ValueError, struct.error, ...
        raise RtcpError(f"malformed RTCP: {type(exc).__name__}") from None


def remb(fci: bytes) -> tuple[int, list[int]]:
    """(bitrate, SSRCs) of a REMB FCI (draft-alvestrand-rmcat-remb); RtcpError if it is not
    one. aiortc's unpack_remb_fci trusts the SSRC count and raised struct.error when it lies."""
    if len(fci) < 8 or fci[:4] != b"REMB":
        raise RtcpError("not a REMB")
    if len(fci) < 8 + 4 * fci[4]:
        raise RtcpError("REMB lists fewer SSRCs than it counts")
    return unpack_remb_fci(fci)


def fir_ssrcs(packet: RtcpPsfbPacket) -> list[int]:
    """Media SSRCs named in a FIR's FCI entries (RFC 5104 4.3.1)."""
    fci = packet.fci
    return [struct.unpack_from("!L", fci, pos)[0] for pos in range(0, len(fci) - 7, 8)]
