"""Downlink bandwidth allocation for one subscriber transport (issue 15 item 3).

The subscriber's feedback (REMB today: see docs/media.md, "Bandwidth allocation") gives an
estimate of its downlink. `Allocator.allocate` shares it out by priority: audio first and
never paused; then video in priority order (active speaker, screen share, the rest), each
first at its lowest layer (a stream that does not fit is paused), then raised towards the
layer its tile wants. Lowering is at once; raising is one layer at a time, only after the
estimate has held above that layer's bit rate plus a margin for `raise_hold_s` (no
flapping). Below a floor the subscriber gets audio only (`video_off`), and video comes back
by itself after the estimate has held above the floor (plus margin) as long.

Pure and synchronous: the inputs are plain data, the one mutable state is this object's
per-consumer hold timers, and `Subscribing` applies the result (media/subscribing.py).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

# REMB outside this range is not a real estimate (0, or exponent tricks giving exabits).
MIN_REMB_BPS = 10_000
MAX_REMB_BPS = 1_000_000_000
FEEDBACK_FRESH_S = 5.0  # an estimate older than this is no estimate
# Used for a layer not measured yet (the browser's cameraEncodings maxBitrate, low->high).
NOMINAL_LAYER_BPS = (150_000, 500_000, 1_500_000)
NOMINAL_AUDIO_BPS = 40_000


class Priority(enum.IntEnum):
    """Lower comes first."""

    SPEAKER = 0  # the active speaker / floor holder's camera
    SCREEN = 1
    OTHER = 2


class Want(enum.Enum):
    """The layer the client's tile needs (`media:layers`, docs/protocol.md)."""

    HIGH = "high"
    LOW = "low"
    OFF = "off"


@dataclass(frozen=True)
class VideoDemand:
    consumer_id: str
    priority: Priority
    layer_bps: tuple[int, ...]  # measured bit rate per spatial layer, low to high (0: none)
    want: Want = Want.HIGH


@dataclass(frozen=True)
class Allocation:
    """The result: per video consumer its layer (None: paused), and audio only or not."""

    layers: dict[str, int | None]
    video_off: bool
    estimate_bps: int | None


@dataclass
class AllocatorStats:
    remb_absurd: int = 0  # REMB values refused (out of MIN/MAX_REMB_BPS)
    no_feedback: int = 0  # times the estimate went missing (kept at the low layer)
    video_off_events: int = 0  # times the subscriber fell to audio only


@dataclass
class _Held:
    layer: int | None = None
    raise_since: float | None = None  # since when a higher layer has fitted


@dataclass
class Allocator:
    margin: float = 0.15  # a raise needs the next layer's rate x (1 + margin)
    raise_hold_s: float = 2.0
    video_floor_bps: int = 120_000  # below (after audio): audio only
    stats: AllocatorStats = field(default_factory=AllocatorStats)
    _estimate: int | None = None
    _estimate_time: float = 0.0
    _had_estimate: bool = False
    _held: dict[str, _Held] = field(default_factory=dict)
    video_off: bool = False
    _on_since: float | None = None  # since when the floor has been cleared, while off

    # -- feedback -------------------------------------------------------------------------
    def on_remb(self, bitrate: int, now: float) -> bool:
        """Take a REMB value; False (and counted) if it is absurd."""
        if isinstance(bitrate, bool) or not isinstance(bitrate, int) \
                or not MIN_REMB_BPS <= bitrate <= MAX_REMB_BPS:
            self.stats.remb_absurd += 1
            return False
        self._estimate, self._estimate_time = bitrate, now
        self._had_estimate = True
        return True

    def estimate(self, now: float) -> int | None:
        if self._estimate is not None and now - self._estimate_time > FEEDBACK_FRESH_S:
            self._estimate = None
            self.stats.no_feedback += 1
        return self._estimate

    # -- allocation -----------------------------------------------------------------------
    def allocate(self, videos: Sequence[VideoDemand], audio_bps: int,
                 now: float) -> Allocation:
        estimate = self.estimate(now)
        live = {v.consumer_id for v in videos}
        for gone in set(self._held) - live:
            del self._held[gone]
        ordered = sorted(videos, key=lambda v: v.priority)
        if estimate is None:
            # No feedback (never, or stale): the low layer, nothing paused for bandwidth.
            layers = {v.consumer_id: None if v.want is Want.OFF else 0 for v in ordered}
            self._remember(layers)
            self.video_off = False
            return Allocation(layers, False, None)
        budget = estimate - audio_bps
        if self._floor_off(budget, now):
            layers = {v.consumer_id: None for v in ordered}
            self._remember(layers)
            return Allocation(layers, True, estimate)
        layers = {}
        for v in ordered:  # everyone's low layer first, in priority order
            cost = _rate(v, 0)
            if v.want is Want.OFF or cost > budget:
                layers[v.consumer_id] = None
                continue
            layers[v.consumer_id] = 0
            budget -= cost
        for v in ordered:  # then raise, in priority order
            layer = layers[v.consumer_id]
            if layer is None:
                continue
            top = 0 if v.want is Want.LOW else len(v.layer_bps) - 1
            held = self._held.setdefault(v.consumer_id, _Held())
            keep = held.layer if held.layer is not None else 0
            keep = min(keep, top)
            while keep > 0 and _rate(v, keep) - _rate(v, 0) > budget:
                keep -= 1  # lower at once
            # The goal: the highest layer that fits with the margin. It is reserved now, so
            # lower priorities cannot take it while this stream waits out its hold.
            goal = keep
            while goal < top and (_rate(v, goal + 1) * (1 + self.margin) - _rate(v, 0)
                                  <= budget):
                goal += 1
            chosen = keep
            if goal == keep:
                held.raise_since = None
            elif held.raise_since is None:
                held.raise_since = now
            elif now - held.raise_since >= self.raise_hold_s:
                chosen, held.raise_since = keep + 1, now  # one step, then hold again
            layers[v.consumer_id] = chosen
            budget -= _rate(v, max(chosen, goal)) - _rate(v, 0)
        self._remember(layers)
        return Allocation(layers, False, estimate)

    def _floor_off(self, budget: int, now: float) -> bool:
        """Audio only below the floor; back after holding above floor x (1 + margin)."""
        if not self.video_off:
            if budget < self.video_floor_bps:
                self.video_off, self._on_since = True, None
                self.stats.video_off_events += 1
            return self.video_off
        if budget >= self.video_floor_bps * (1 + self.margin):
            if self._on_since is None:
                self._on_since = now
            elif now - self._on_since >= self.raise_hold_s:
                self.video_off = False
        else:
            self._on_since = None
        return self.video_off

    def _remember(self, layers: dict[str, int | None]) -> None:
        for consumer_id, layer in layers.items():
            held = self._held.setdefault(consumer_id, _Held())
            if held.layer is not None and (layer is None or layer < held.layer):
                held.raise_since = None  # a drop restarts the hold
            held.layer = layer


def _rate(v: VideoDemand, layer: int) -> int:
    """A layer's measured rate, or its nominal one while not measured."""
    measured = v.layer_bps[layer] if layer < len(v.layer_bps) else 0
    if measured > 0:
        return measured
    return NOMINAL_LAYER_BPS[min(layer, len(NOMINAL_LAYER_BPS) - 1)]
