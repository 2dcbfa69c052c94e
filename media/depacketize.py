"""RTP payload → codec frames for the recorder: no decoding, only unwrapping.

VP8 (RFC 7741): the payload descriptor's length is read from its flag bits here (what
aiortc's VpxPayloadDescriptor.parse skips, and where it would raise, without making a
descriptor object per packet: the mux process's cost per recorded packet); H.264 (RFC 6184,
packetization-mode 1: single NAL, STAP-A, FU-A) uses aiortc's parser. A frame is the
concatenation of its packets' payloads in sequence order. Opus packets are frames as they are.
"""

from __future__ import annotations

from aiortc.codecs.h264 import H264PayloadDescriptor

VP8_START_CODE = b"\x9d\x01\x2a"


def frame_start(codec: str, payload: bytes) -> bool:
    """Can a frame begin with this packet? (VP8: S=1 and PID=0; H.264: not a FU-A middle.)"""
    if not payload:
        return False
    if codec == "VP8":
        return bool(payload[0] & 0x10) and not payload[0] & 0x07
    nal = payload[0] & 0x1F
    if nal == 28:  # FU-A: only its first fragment starts a NAL unit
        return len(payload) > 1 and bool(payload[1] & 0x80)
    return True


def vp8_descriptor_length(payload: bytes) -> int:
    """The RFC 7741 payload descriptor's length in bytes; ValueError where aiortc's
    VpxPayloadDescriptor.parse raises (truncated)."""
    n = len(payload)
    if n < 1:
        raise ValueError("VPX descriptor is too short")
    if not payload[0] & 0x80:  # no extension byte
        return 1
    if n < 2:
        raise ValueError("VPX descriptor has truncated extended bits")
    ext = payload[1]
    pos = 2
    if ext & 0x80:  # I: a picture id, 7 or 15 bits
        if n < pos + 1:
            raise ValueError("VPX descriptor has truncated PictureID")
        if payload[pos] & 0x80:
            if n < pos + 2:
                raise ValueError("VPX descriptor has truncated long PictureID")
            pos += 2
        else:
            pos += 1
    if ext & 0x40:  # L: TL0PICIDX
        if n < pos + 1:
            raise ValueError("VPX descriptor has truncated TL0PICIDX")
        pos += 1
    if ext & 0x30:  # T or K: one byte
        if n < pos + 1:
            raise ValueError("VPX descriptor has truncated T/K")
        pos += 1
    return pos


def depacketize(codec: str, payloads: list[bytes]) -> bytes:
    """One frame from its packets' payloads, in order; ValueError on a malformed one.

    VP8 gives the raw frame (a WebM block); H.264 gives Annex B (start codes).
    """
    if codec == "VP8":
        if len(payloads) == 1:
            return payloads[0][vp8_descriptor_length(payloads[0]):]
        return b"".join([memoryview(p)[vp8_descriptor_length(p):] for p in payloads])
    parse = H264PayloadDescriptor.parse
    parts = []
    for payload in payloads:
        _, data = parse(payload)
        parts.append(data)
    return b"".join(parts)


def vp8_size(frame: bytes) -> tuple[int, int] | None:
    """Width and height from a VP8 keyframe's header (RFC 6386 9.1), None if not one."""
    if len(frame) < 10 or frame[0] & 0x01 or frame[3:6] != VP8_START_CODE:
        return None
    width = int.from_bytes(frame[6:8], "little") & 0x3FFF
    height = int.from_bytes(frame[8:10], "little") & 0x3FFF
    return (width, height) if width and height else None
