"""Simulcast layer choice for one consumer: which layer to forward, how to switch.

A consumer of a simulcast producer has one output SSRC, a current layer (the one it
forwards) and a target layer (the one it wants). The target is the preferred spatial layer
(set through `Peer.set_preferred_layers`; the top one by default) if the publisher sends
it, else the nearest one below that it sends, else the lowest above. The consumer switches
only at a keyframe of the target (asked for with a PLI to that layer, rate limited per
layer). At the switch its timestamps continue through the publisher's sender reports: both
layers' RTP clocks are mapped to its NTP clock (as mediasoup's SimulcastConsumer), so a
frame keeps its capture time; without both reports, by the wall time elapsed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from .recv_stream import RecvStream, SenderReportRef
from .temporal import Run

MAX_TS_JUMP_S = 1.0  # a mapped timestamp further than this from the last one is not trusted
SWITCH_STEP_S = 0.033  # a switch whose frame the old layer already sent: one frame later


@dataclass(frozen=True)
class ConsumerLayers:
    """A consumer's layers: what `Peer.set_preferred_layers` returns and stats show.

    `spatial_layers` is how many the producer has (1: not simulcast). `current` is None
    until the first keyframe is forwarded. Preferences are None for "the highest".
    The temporal layers (simulcast VP8; None otherwise, media/temporal.py): pictures of
    TID <= `current_temporal` are sent, `target_temporal` is where it goes (3: all).
    """

    consumer_id: str
    spatial_layers: int
    current: int | None
    target: int
    preferred_spatial: int | None
    preferred_temporal: int | None
    current_temporal: int | None = None
    target_temporal: int | None = None


class Segment(NamedTuple):
    """One stretch of a consumer's output taken from one layer: maps its NACKs back."""

    out_start: int  # first outgoing extended sequence number of the stretch
    seq_offset: int
    ts_offset: int
    epoch: int
    layer: int
    pid_offset: int
    tl0_offset: int
    # Temporal layers' dropped runs (media/temporal.py), kept when the stretch ends (None:
    # the live one, read from the leg), and whether older runs were forgotten.
    runs: tuple[Run, ...] | None = None
    forgotten: bool = False


def choose_target(streams: Sequence[RecvStream], preferred: int | None, now: float) -> int:
    top = len(streams) - 1
    wanted = top if preferred is None else max(0, min(preferred, top))
    active = [s.index for s in streams if s.active(now)]
    if not active:
        return wanted  # nothing flows (yet): wait for the one wanted
    below = [i for i in active if i <= wanted]
    return max(below) if below else min(active)


def mapped_ts_offset(old: SenderReportRef | None, new: SenderReportRef | None,
                     old_offset: int, clock_rate: int) -> int | None:
    """The new layer's timestamp offset that keeps capture times: a timestamp t of the new
    layer is sent as the old layer's timestamp of the same NTP instant, plus the old
    offset. None without both reports."""
    if old is None or new is None:
        return None
    ntp_delta = (new.ntp - old.ntp) / (1 << 32)
    return old_offset + old.rtp_ts - new.rtp_ts + round(ntp_delta * clock_rate)


def ts_after(ts: int, offset: int, last_ts: int, clock_rate: int) -> int | None:
    """`offset` if it puts `ts` after the last timestamp sent (by under MAX_TS_JUMP_S);
    if it puts it at or shortly before it (the old layer's copy of this frame went out
    first), the offset that puts it one frame (SWITCH_STEP_S) after; None if absurd."""
    delta = (ts + offset - last_ts) & 0xFFFFFFFF
    if delta >= 0x80000000:
        delta -= 1 << 32
    if 0 < delta < MAX_TS_JUMP_S * clock_rate:
        return offset
    if -MAX_TS_JUMP_S * clock_rate < delta <= 0:
        return offset - delta + round(SWITCH_STEP_S * clock_rate)
    return None
