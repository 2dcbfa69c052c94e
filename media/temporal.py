"""VP8 temporal layers: a consumer's step down without a keyframe (issue 15 item 2).

Chromium encodes each VP8 simulcast layer as L1T3 by default: pictures of TID 0 (a quarter of
the frame rate), 1 (with them, half) and 2 (all), each TID-0 picture numbered in TL0PICIDX.
A picture refers only to pictures of its TID or lower, so a consumer can drop the pictures
above a temporal target at once. It goes back up only at a layer sync (the Y bit: a picture
that refers to TID-0 pictures only), as mediasoup's VP8 EncodingContext and libwebrtc do.

Per consumer (its C leg, media/fanout_build.py's `hop_temporal` is the C copy of `step`):
- the decision is per picture, at the first packet seen of a PictureID newer than the last:
  dropped if its TID is above the target, or above the current layer without the Y bit;
  else sent, and a Y picture above the current layer raises it. A dropped picture of TID t
  lowers the current layer below t (later pictures of t may refer to it).
- dropped packets leave no hole: each stretch of them (a *run* of source sequence numbers)
  moves the consumer's sequence offset down by its length, and each dropped picture its
  PictureID offset by one. TL0PICIDX needs nothing: TID-0 pictures are never dropped.
- a packet that arrives late (after a newer one) is mapped with the offsets in force before
  the runs after it (the leg keeps the last RUNS runs); one inside a run is dropped. The
  receiver's NACKs are mapped back the same way (`source_of`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .fanout import ALL_TEMPORAL, RUNS
from .rtp import ForwardPacket

__all__ = ["ALL_TEMPORAL", "Run", "restart", "runs_of", "source_of", "step"]


class Run(NamedTuple):
    """Source sequence numbers start..end (extended) not sent; the offsets after them."""

    start: int
    end: int
    seq_offset: int
    pid_offset: int


def restart(leg: Any, ext: int) -> None:
    """A new stretch of output from source packet `ext` (a keyframe): no runs, the current
    temporal layer the target (every picture after a keyframe can be decoded)."""
    leg.runs = 0
    leg.in_highest = ext - 1
    leg.in_pid = -1
    leg.in_dropped = 0
    leg.base_seq = leg.seq_offset
    leg.base_pid = leg.pid_offset
    leg.tid_current = leg.tid_target


def _drop_newest(leg: Any, ext: int) -> None:
    n = int(leg.runs)
    i = (n - 1) % RUNS
    if n > 0 and leg.run_end[i] == leg.in_highest:  # the run goes on (over any gap)
        leg.seq_offset -= ext - leg.run_end[i]
        leg.run_end[i] = ext
    else:  # a gap after a frame's last packet sent is this picture's: in the run
        start = leg.in_highest + 1 if leg.last_marker else ext
        i = n % RUNS
        leg.run_start[i], leg.run_end[i] = start, ext
        leg.seq_offset -= ext - start + 1
        leg.runs = n + 1
    leg.run_seq[i], leg.run_pid[i] = leg.seq_offset, leg.pid_offset
    leg.in_highest = ext
    leg.temporal_dropped += 1


def step(leg: Any, fp: ForwardPacket) -> tuple[int, int] | None:
    """None if `fp` is not sent; else its (sequence offset, PictureID offset)."""
    ext, d = fp.ext_seq, fp.vp8
    if ext > leg.in_highest:
        if d is not None and d.pid_pos and d.tid >= 0:
            mask = 0x7FFF if d.pid_wide else 0x7F
            diff = (d.pid - leg.in_pid) & mask
            if leg.in_pid < 0 or (diff and diff <= mask // 2):  # a new picture
                tid = d.tid
                drop = tid > leg.tid_target or (tid > leg.tid_current and not d.sync)
                leg.in_pid, leg.in_dropped = d.pid, int(drop)
                if drop:
                    leg.pid_offset = (leg.pid_offset - 1) & 0x7FFF
                    if leg.tid_current >= tid:  # later pictures of tid may refer to it
                        leg.tid_current = tid - 1
                elif tid > leg.tid_current:
                    leg.tid_current = tid  # up at a layer sync
                elif leg.tid_current > leg.tid_target:
                    leg.tid_current = leg.tid_target
            if leg.in_dropped and d.pid == leg.in_pid:
                _drop_newest(leg, ext)
                return None
        leg.in_highest = ext
        return int(leg.seq_offset), int(leg.pid_offset)
    offsets = _late_offsets(leg, ext)
    if offsets is None or (d is not None and d.pid_pos and d.tid > leg.tid_current):
        # In a dropped run or before the runs remembered; or its slot was kept but it is of
        # a layer not sent now: it is left a hole.
        leg.temporal_dropped += 1
        return None
    return offsets


def _late_offsets(leg: Any, ext: int) -> tuple[int, int] | None:
    n = int(leg.runs)
    for r in range(n - 1, -1, -1):
        if r < n - RUNS:
            return None  # before what the ring remembers
        i = r % RUNS
        if ext > leg.run_end[i]:
            return int(leg.run_seq[i]), int(leg.run_pid[i])
        if ext >= leg.run_start[i]:
            return None  # in a dropped run
    return int(leg.base_seq), int(leg.base_pid)


def runs_of(leg: Any) -> tuple[tuple[Run, ...], bool]:
    """The runs the leg remembers, oldest first, and whether older ones were forgotten."""
    n = int(leg.runs)
    first = max(0, n - RUNS)
    runs = tuple(Run(int(leg.run_start[r % RUNS]), int(leg.run_end[r % RUNS]),
                     int(leg.run_seq[r % RUNS]), int(leg.run_pid[r % RUNS]))
                 for r in range(first, n))
    return runs, first > 0


def source_of(out: int, seq_offset: int, pid_offset: int, runs: tuple[Run, ...],
              forgotten: bool) -> tuple[int, int] | None:
    """The source extended sequence number and PictureID offset of outgoing extended `out`,
    in a stretch that started with these offsets and dropped `runs`; None if it is before
    the runs remembered."""
    for run in reversed(runs):
        if out >= run.end + 1 + run.seq_offset:  # the first packet sent after the run
            return out - run.seq_offset, run.pid_offset
    if forgotten:
        return None
    return out - seq_offset, pid_offset
