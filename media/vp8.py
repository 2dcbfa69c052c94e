"""The VP8 payload descriptor (RFC 7741 section 4.2) of simulcast packets: read once per
packet, rewritten per consumer.

Each simulcast layer numbers its pictures (PictureID, 7 or 15 bits) and its base temporal
layer frames (TL0PICIDX, 8 bits) on its own. A consumer that switches layers rewrites them
so the subscriber's decoder sees one sequence without a jump (as mediasoup's
VP8::EncodingContext). The C fan-out does the rewrite in its own copy of the packet
(media/fanout_build.py); `rewrite` is the Python path's and retransmissions' copy of it.

Temporal layers (L1T3: TID 0, 1, 2 in the descriptor, Chromium's default in each simulcast
layer) are dropped above a consumer's temporal target by media/temporal.py, which also moves
the PictureID offset down by one per dropped picture.
"""

from __future__ import annotations

from typing import NamedTuple


class Vp8Descriptor(NamedTuple):
    """Positions are offsets in the forwarded tail (extension block + payload); 0: absent."""

    pid: int
    pid_pos: int
    pid_wide: bool  # 15-bit PictureID (M bit set)
    tl0: int
    tl0_pos: int
    tid: int  # temporal layer id, -1 if absent
    sync: bool  # Y bit: a layer sync (the frame refers to TL0 frames only)


def parse_descriptor(payload: bytes, offset: int) -> Vp8Descriptor | None:
    """The descriptor's PictureID / TL0PICIDX / TID, None if it carries neither id."""
    size = len(payload)
    if size < 2 or not payload[0] & 0x80:  # no X byte: nothing to rewrite
        return None
    x = payload[1]
    pos = 2
    pid = pid_pos = tl0 = tl0_pos = 0
    wide = False
    tid = -1
    sync = False
    if x & 0x80:  # I
        if size <= pos:
            return None
        wide = bool(payload[pos] & 0x80)
        if wide:
            if size <= pos + 1:
                return None
            pid = ((payload[pos] & 0x7F) << 8) | payload[pos + 1]
        else:
            pid = payload[pos]
        pid_pos = offset + pos
        pos += 2 if wide else 1
    if x & 0x40:  # L
        if size <= pos:
            return None
        tl0, tl0_pos = payload[pos], offset + pos
        pos += 1
    if x & 0x20:  # T
        if size <= pos:
            return None
        tid = payload[pos] >> 6
        sync = bool(payload[pos] & 0x20)
    if not pid_pos and not tl0_pos:
        return None
    return Vp8Descriptor(pid, pid_pos, wide, tl0, tl0_pos, tid, sync)


def rewritten_ids(d: Vp8Descriptor, pid_offset: int, tl0_offset: int) -> tuple[int, int]:
    """The (PictureID, TL0PICIDX) a consumer sends for `d`."""
    mask = 0x7FFF if d.pid_wide else 0x7F
    return (d.pid + pid_offset) & mask, (d.tl0 + tl0_offset) & 0xFF


def rewrite(tail: bytes, d: Vp8Descriptor, pid_offset: int, tl0_offset: int) -> bytes:
    """A copy of `tail` with the ids moved by the consumer's offsets."""
    pid, tl0 = rewritten_ids(d, pid_offset, tl0_offset)
    out = bytearray(tail)
    if d.pid_pos:
        if d.pid_wide:
            out[d.pid_pos] = 0x80 | (pid >> 8)
            out[d.pid_pos + 1] = pid & 0xFF
        else:
            out[d.pid_pos] = pid
    if d.tl0_pos:
        out[d.tl0_pos] = tl0
    return bytes(out)
