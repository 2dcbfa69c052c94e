"""Downlink bandwidth allocation for one subscriber transport (issue 15 item 3).

The subscriber's feedback (REMB today: see docs/media.md, "Bandwidth allocation") gives an
estimate of its downlink. **One budget rule**: a REMB is measured on the packets that carry
abs-send-time, which the SFU writes on video only (and a browser feeds no audio to its
receive-side estimator), so the estimate is the *video* budget: the floor, the fit of a
layer and the "no congestion" test of a try all compare it with video rates, never with
audio (audio is never paused and its rate is not taken off). `Allocator.allocate` shares it
out: video in priority order (active speaker, screen share, the rest), each first at its
lowest layer (a stream that does not fit is paused), then raised towards the layer its tile
wants. Lowering is at once; raising is one layer at a time, only after the estimate has
held above that layer's bit rate plus a margin for `raise_hold_s` (no flapping). Below a
floor the subscriber gets audio only (`video_off`), and video comes back by itself.
**Loss, not a REMB alone, cuts video**: audio only, and a stream paused for bandwidth, need
the subscriber's receiver reports to show loss as well (a CPU-starved Chromium's REMB
collapses on a perfect link: 415 -> 10.6 kbit/s on loopback); a REMB that collapses
without loss lowers layers (to the low layer, temporal steps) and keeps video flowing.
**Start-up grace**: for `startup_grace_s` after the first estimate (of the transport, or
after a spell without one) nothing is paused and video never goes off: a just-joined or
CPU-starved browser's first REMB is low and climbs from there.

Pure and synchronous: the inputs are plain data, the one mutable state is this object's
per-consumer hold timers, and `Subscribing` applies the result (media/subscribing.py).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

# REMB outside this range is not a real estimate (0, or exponent tricks giving exabits).
# libwebrtc's own floor (5 kbit/s) is below it: a Chrome starved of CPU on a loaded box sent
# it on a clean link, and audio only on that was worse than keeping the last estimate.
MIN_REMB_BPS = 10_000
MAX_REMB_BPS = 1_000_000_000
FEEDBACK_FRESH_S = 5.0  # an estimate older than this is no estimate
# Used for a layer not measured yet (the browser's cameraEncodings maxBitrate, low->high).
NOMINAL_LAYER_BPS = (150_000, 500_000, 1_500_000)


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
    temporal: bool = False  # its layers carry VP8 temporal layers (media/temporal.py)


@dataclass(frozen=True)
class Allocation:
    """The result: per video consumer its layer (None: paused), and audio only or not."""

    layers: dict[str, int | None]
    video_off: bool
    estimate_bps: int | None
    temporal: dict[str, int] = field(default_factory=dict)  # a temporal step: TID <= this
    # Probing (`Allocator.padding_probes`): the estimate the next raise needs; the transport
    # probes towards it (media/probe.py) instead of trying the layer.
    probe_bps: int | None = None


@dataclass
class AllocatorStats:
    remb_absurd: int = 0  # REMB values refused (out of MIN/MAX_REMB_BPS)
    no_feedback: int = 0  # times the estimate went missing (kept at the low layer)
    video_off_events: int = 0  # times the subscriber fell to audio only
    link_falls: int = 0  # falls of the link acted on (`on_fall`, media/link_fall.py)


@dataclass
class _Held:
    layer: int | None = None
    raise_since: float | None = None  # since when a higher layer has fitted
    step_since: float | None = None  # since when it has been on a temporal step


@dataclass
class Allocator:
    margin: float = 0.15  # a raise needs the next layer's rate x (1 + margin)
    raise_hold_s: float = 2.0
    temporal_step_s: float = 2.0  # longest a stream stays on a temporal step (below)
    # An estimate (video's budget) below this, and below what the first stream's low layer
    # needs, gives audio only. Both: a REMB says at most ~1.5x what arrives, so with a cheap
    # low layer (a still camera, a starved encoder: 20-30 kbit/s) it stays under 60 kbit/s
    # on a perfect link, and a Chromium meeting on loopback went audio only for good.
    video_floor_bps: int = 60_000
    startup_grace_s: float = 10.0  # after the first estimate: no pause, no audio only
    # REMB never says more than ~1.5x what arrives (the receiver's AIMD cap), so a layer
    # 3x the one below is never "fitted" by it: an estimate >= probe_ratio x the rate in
    # use means no congestion, and the next layer is tried (one stream at a time). For
    # probe_window_s after a raise nothing is lowered while the estimate does not fall
    # below probe_fall x its highest since the raise (the receiver's estimate climbs to
    # the new rate slowly, by some 5-8 %/s in Chrome: a rising estimate is no congestion);
    # a lowering then, or within probe_settle_s after, doubles the hold before the next
    # try; a try that outlasts both resets it.
    probe_ratio: float = 1.4
    probe_window_s: float = 15.0
    probe_settle_s: float = 5.0
    probe_fall: float = 0.85
    max_probe_hold_s: float = 32.0
    # A failed try of a layer raises the bar for trying it again: not before the estimate
    # is try_bar x its peak during the failed try, for try_bar_s (a weak ward's REMB sits
    # at its cap, "uncongested", below its link: each try of a layer its link cannot carry
    # costs it a freeze of about a second, and would come back every max_probe_hold_s).
    try_bar: float = 1.1
    try_bar_s: float = 60.0
    # Transport-cc negotiated (media/probe.py): the estimate is the SFU's own and a padding
    # probe can lift it at once, so instead of trying the next layer (a freeze if the link
    # cannot carry it) the allocation asks for a probe (`Allocation.probe_bps`) and raises
    # only once the estimate fits the layer, as any raise.
    padding_probes: bool = False
    probed_hold_s: float = 1.0  # the raise hold then: the estimate is measured, not a REMB
    # A link that fell under what was sent (media/link_fall.py, `on_fall`): for fall_s a
    # stream that no longer fits goes to its low layer, not to the highest that fits nor to
    # a temporal step, and nothing is raised. The new layer's keyframe crosses a bottleneck
    # whose queue has just drained (media/subscribing.py holds it until then): the low
    # layer's is the smallest (3.2 kB against 11.3 kB for 320x180 in bench/network.py,
    # whose 500 kbit/s link queues 12.5 kB: the larger one overflowed it with the frames
    # after it, and the picture froze again). Probes find the layer that fits afterwards.
    fall_s: float = 1.0
    # Loss (the subscriber's receiver reports), GCC's sender-side rule: above loss_high the
    # estimate is capped at what is sent x (1 - loss / 2), compounding per report; below
    # loss_low the cap goes. A drop-tail bottleneck's full queue keeps the delay flat, so a
    # receiver's delay-based REMB does not fall while most packets are lost (a 300 kbit/s
    # Chromium ward kept a 640x360 layer at 60 % loss and 2 fps).
    off_retry_s: float = 5.0  # audio only: video tried again after this (x the back-off)
    loss_high: float = 0.10
    loss_low: float = 0.02
    # Audio only (and pausing a stream for bandwidth) needs loss besides a low estimate: a
    # report of more than loss_high lost within loss_evidence_s, or one of loss_low or more
    # within it while the estimate has been under the floor for low_long_s. A link below
    # the low layer cannot avoid loss; a starved receiver's collapsed REMB has none.
    loss_evidence_s: float = 4.0
    low_long_s: float = 10.0
    stats: AllocatorStats = field(default_factory=AllocatorStats)
    video_off: bool = False
    _estimate: int | None = None
    _estimate_time: float = 0.0
    _held: dict[str, _Held] = field(default_factory=dict)
    _on_since: float | None = None  # since when video may come back, while off
    _probe_hold_s: float = 0.0  # set from raise_hold_s
    _last_probe: float | None = None
    _probe_estimate = 0
    _loss_cap: int | None = None
    _off_since = 0.0
    _used = 0  # video in use at the last allocation
    _loss_floor = 0  # the cap's least: the first video's low layer
    _fell_at: float | None = None  # the last fall of the link (`on_fall`)
    _fed_since: float | None = None  # since when an estimate has been there (the grace)
    _lossy_at: float | None = None  # the last report of more than loss_high lost
    _some_loss_at: float | None = None  # the last report of loss_low or more lost
    _low_since: float | None = None  # since when the estimate has been under the floor
    _shed: set[str] = field(default_factory=set)  # paused for bandwidth (not for a want)
    # (consumer id, layer) -> (estimate a try needs, until when): failed tries
    _bars: dict[tuple[str, int], tuple[float, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._probe_hold_s = self.raise_hold_s

    # -- feedback -------------------------------------------------------------------------
    def on_remb(self, bitrate: int, now: float) -> bool:
        """Take a REMB value; False (and counted) if it is absurd."""
        if isinstance(bitrate, bool) or not isinstance(bitrate, int) \
                or not MIN_REMB_BPS <= bitrate <= MAX_REMB_BPS:
            self.stats.remb_absurd += 1
            return False
        self._estimate, self._estimate_time = bitrate, now
        return True

    def on_loss(self, fraction: float, now: float) -> bool:
        """A receiver report's fraction lost (of video); True if it lowered the cap (on the
        video sent, as the estimate it caps is video's). It is also the evidence that lets
        a low estimate cut video (`loss_evidence_s`)."""
        if fraction > self.loss_high:
            self._lossy_at = now
        if fraction >= self.loss_low:
            self._some_loss_at = now
        if fraction > self.loss_high and self._used:
            base = self._used if self._loss_cap is None else min(self._loss_cap, self._used)
            self._loss_cap = max(self._loss_floor, int(base * (1 - fraction / 2)))
            return True
        if fraction < self.loss_low:
            self._loss_cap = None
        return False

    def on_fall(self, now: float) -> None:
        """The link fell under what is sent (`fall_s`); the estimate has fallen with it."""
        self._fell_at = now
        self.stats.link_falls += 1
        if self._last_probe is not None and now - self._last_probe >= self.probe_settle_s:
            # The layers it lowers held since their raise: the link changed, their try did
            # not fail, so no try bar (1.1x the estimate before the fall, for try_bar_s) keeps
            # them off once the link is back and the estimate fits (test_weak_links' restore
            # missed the top layer at load 17 under such a bar); nor a doubled hold.
            self._last_probe, self._probe_hold_s = None, self.raise_hold_s

    def estimate(self, now: float) -> int | None:
        if self._estimate is not None and now - self._estimate_time > FEEDBACK_FRESH_S:
            self._estimate = None
            self.stats.no_feedback += 1
        return self._estimate

    def _lossy(self, now: float) -> bool:
        """Whether the receiver reports show the loss that lets a low estimate cut video."""
        def recent(at: float | None) -> bool:
            return at is not None and now - at <= self.loss_evidence_s
        return recent(self._lossy_at) or (
            recent(self._some_loss_at) and self._low_since is not None
            and now - self._low_since >= self.low_long_s)

    @property
    def _probe_judged_s(self) -> float:
        """After a raise, a lowering within this long is the try's failure."""
        return self.probe_window_s + self.probe_settle_s

    @property
    def probe_hold_s(self) -> float:
        return self._probe_hold_s

    # -- allocation -----------------------------------------------------------------------
    def allocate(self, videos: Sequence[VideoDemand], now: float) -> Allocation:
        """The layers for `videos` now. Audio is not among them: it is never paused, and the
        estimate (REMB) does not cover it (the module's docstring)."""
        estimate = self.estimate(now)
        for gone in set(self._held) - {v.consumer_id for v in videos}:
            del self._held[gone]
        for key in [k for k in self._bars if k[0] not in self._held]:
            del self._bars[key]
        ordered = sorted(videos, key=lambda v: v.priority)
        if estimate is None:
            # No feedback (never, or stale): the low layer, nothing paused for bandwidth.
            low = {v.consumer_id: None if v.want is Want.OFF else 0 for v in ordered}
            self.video_off, self._fed_since, self._low_since = False, None, None
            self._shed.clear()
            self._remember(low, now)
            return Allocation(low, False, None)
        if self._fed_since is None:
            self._fed_since = now
        grace = now - self._fed_since < self.startup_grace_s
        video = sum(_rate(v, layer) for v in ordered
                    if (layer := self._layer(v.consumer_id)) is not None)
        self._used = video
        self._loss_floor = _rate(ordered[0], 0) if ordered else 0
        if self._loss_cap is not None:  # never below the low layer as it measures now
            estimate = min(estimate, max(self._loss_cap, self._loss_floor))
        # The one budget rule: the estimate is video's (REMB is measured on what carries
        # abs-send-time: video only; at most ~1.5x the video that arrives). The floor, the
        # fit and the try all use it as it is; audio is not taken off (with it taken off, a
        # browser's first REMB of ~100 kbit/s was "under the floor" and sent it to audio only).
        budget = estimate
        uncongested = estimate >= video * self.probe_ratio  # no sign of congestion
        trying = (self._last_probe is not None and now - self._last_probe < self.probe_window_s
                  and estimate >= self._probe_estimate * self.probe_fall)
        if trying:
            self._probe_estimate = max(self._probe_estimate, estimate)  # the peak
        floor = min(self.video_floor_bps, _rate(ordered[0], 0)) if ordered \
            else self.video_floor_bps
        if budget >= floor:
            self._low_since = None
        elif self._low_since is None:
            self._low_since = now
        lossy = self._lossy(now)  # a low estimate alone cuts no video (the docstring)
        if self._floor_off(budget, floor, trying or grace or not lossy, now):
            off: dict[str, int | None] = {v.consumer_id: None for v in ordered}
            self._shed.clear()
            self._remember(off, now)
            return Allocation(off, True, estimate)
        layers: dict[str, int | None] = {}
        first = True
        shed: set[str] = set()
        for v in ordered:  # everyone's low layer first, in priority order
            cost = _rate(v, 0)
            if v.want is Want.OFF:
                layers[v.consumer_id] = None
                continue
            if cost > budget and not first and not grace \
                    and (lossy or v.consumer_id in self._shed):
                layers[v.consumer_id] = None  # the first one is kept: above the floor
                shed.add(v.consumer_id)  # paused on loss; back when it fits
                continue
            layers[v.consumer_id], first = 0, False
            budget -= cost
        self._shed = shed
        temporal: dict[str, int] = {}
        falling = self._fell_at is not None and now - self._fell_at < self.fall_s
        probing = falling  # one try at a time, for the first stream short of its top
        probe_bps: int | None = None
        for v in ordered:  # then raise, in priority order
            if layers[v.consumer_id] is None:
                continue
            top = 0 if v.want is Want.LOW else len(v.layer_bps) - 1
            held = self._held.setdefault(v.consumer_id, _Held())
            keep = min(held.layer or 0, top)
            # Between spatial layers, a lower frame rate first: no keyframe, no freeze, and
            # the bottleneck's queue drains. A bridge, not a place to stay: after
            # temporal_step_s the spatial layer goes down (a ward is better served by the
            # low layer at the camera's rate than by 5 fps of a bigger one), and its
            # keyframe then crosses a drained queue.
            step = None
            bridge = held.step_since is None or now - held.step_since < self.temporal_step_s
            if falling and keep > 0 and _rate(v, keep) - _rate(v, 0) > budget:
                keep = 0  # a fall: the low layer, whose keyframe is the smallest
            while not trying and keep > 0 and _rate(v, keep) - _rate(v, 0) > budget:
                step = _temporal_step(v, keep, budget) if bridge else None
                if step is not None:
                    break
                keep -= 1  # lower at once
            if step is None:
                held.step_since = None
            elif held.step_since is None:
                held.step_since = now
            if step is not None:  # there until the layer fits again, for temporal_step_s
                held.raise_since, probing = None, True
                layers[v.consumer_id], temporal[v.consumer_id] = keep, step
                budget -= int(_rate(v, keep) * TEMPORAL_SHARE[step]) - _rate(v, 0)
                continue
            # The goal: the highest layer that fits with the margin. It is reserved now, so
            # lower priorities cannot take it while this stream waits out its hold.
            goal = keep
            while not falling and goal < top and (
                    _rate(v, goal + 1) * (1 + self.margin) - _rate(v, 0) <= budget):
                goal += 1
            hold = self.probed_hold_s if self.padding_probes else self.raise_hold_s
            bar = self._bar(v.consumer_id, keep + 1, now) if self.padding_probes else 0.0
            if goal > keep and estimate < bar:
                goal = keep  # its raise failed lately: a probe must show the bar first
            if goal == keep < top and not probing and self.padding_probes:
                # what the estimate must be for the next layer to fit with the margin (and
                # its bar: a short probe can pass in a shaper's burst and lift the estimate
                # above a link that then cannot carry the layer, as seen with Chromium)
                probe_bps = max(int(bar), estimate - budget - _rate(v, 0)
                                + int(_rate(v, keep + 1) * (1 + self.margin)))
            elif goal == keep < top and uncongested and not probing \
                    and estimate >= self._bar(v.consumer_id, keep + 1, now):
                goal, hold = keep + 1, self._probe_hold_s
            probing = probing or goal < top or keep < top
            chosen = keep
            if goal == keep:
                held.raise_since = None
            elif held.raise_since is None:
                held.raise_since = now
            elif now - held.raise_since >= hold:
                chosen, held.raise_since = keep + 1, now  # one step, then hold again
                self._last_probe, self._probe_estimate = now, estimate
            layers[v.consumer_id] = chosen
            budget -= _rate(v, max(chosen, goal)) - _rate(v, 0)
        self._remember(layers, now)
        return Allocation(layers, False, estimate, temporal, probe_bps)

    def _layer(self, consumer_id: str) -> int | None:
        held = self._held.get(consumer_id)
        return held.layer if held is not None else None

    def _floor_off(self, budget: int, floor: int, spared: bool, now: float) -> bool:
        """Audio only below `floor` (not while `spared`: a try, the start-up grace, or no
        loss in the receiver reports);
        back after holding above floor x (1 + margin) for the probe hold; or tried again
        after off_retry_s (x the back-off) whatever the estimate: a REMB is measured on video
        (what carries abs-send-time), so with none flowing Chrome's sinks towards its floor
        and would never show the link recovered; nor, back, for a while (Chrome's climbs
        ~8 %/s from there): while it does not fall (a try), the floor waits."""
        if not self.video_off:
            if budget < floor and not spared:
                self.video_off, self._on_since, self._off_since = True, None, now
                self._loss_cap = None  # no video, no loss to lift it: the estimate rules
                self._lossy_at = self._some_loss_at = None  # back, loss is judged anew
                self.stats.video_off_events += 1
                self._probe_failed(now)
            return self.video_off
        retry = min(self.off_retry_s * self._probe_hold_s / self.raise_hold_s, self.try_bar_s)
        if budget >= floor * (1 + self.margin) \
                or now - self._off_since >= retry:
            if self._on_since is None:
                self._on_since = now
            elif now - self._on_since >= self._probe_hold_s:
                self.video_off, self._last_probe = False, now
                self._probe_estimate = budget
        else:
            self._on_since = None
        return self.video_off

    def _bar(self, consumer_id: str, layer: int, now: float) -> float:
        bar = self._bars.get((consumer_id, layer))
        if bar is None:
            return 0.0
        if now >= bar[1]:
            del self._bars[(consumer_id, layer)]
            return 0.0
        return bar[0]

    def _probe_failed(self, now: float, left: Sequence[tuple[str, int]] = ()) -> None:
        if self._last_probe is not None and now - self._last_probe < self._probe_judged_s:
            self._probe_hold_s = min(self._probe_hold_s * 2, self.max_probe_hold_s)
            for key in left:  # the layers that did not hold
                self._bars[key] = (self._probe_estimate * self.try_bar, now + self.try_bar_s)
        self._last_probe = None

    def _remember(self, layers: dict[str, int | None], now: float) -> None:
        left: list[tuple[str, int]] = []
        for consumer_id, layer in layers.items():
            held = self._held.setdefault(consumer_id, _Held())
            if held.layer is not None and (layer is None or layer < held.layer):
                held.raise_since = None  # a drop restarts the hold
                left.append((consumer_id, held.layer))
            held.layer = layer
        if left and not self.video_off:
            self._probe_failed(now, left)
        elif self._last_probe is not None and now - self._last_probe >= self._probe_judged_s:
            self._last_probe, self._probe_hold_s = None, self.raise_hold_s  # it held


def _rate(v: VideoDemand, layer: int) -> int:
    """A layer's measured rate, or its nominal one while not measured."""
    measured = v.layer_bps[layer] if layer < len(v.layer_bps) else 0
    if measured > 0:
        return measured
    return NOMINAL_LAYER_BPS[min(layer, len(NOMINAL_LAYER_BPS) - 1)]


# The share of a layer's rate in its temporal layers up to TID 0 and 1 (of L1T3): libwebrtc
# allocates 40 % and 60 %; measured of Chromium's fake camera, 25-33 % and 36-54 %
# (docs/media.md, "Temporal layers"). The larger is taken: a step that fits does.
TEMPORAL_SHARE = (0.4, 0.6)


def _temporal_step(v: VideoDemand, layer: int, budget: int) -> int | None:
    """The highest temporal layer of `layer` (1, then 0) that fits `budget` (the low layer's
    rate already taken off), None if none does or it has none."""
    if not v.temporal:
        return None
    for tid in (1, 0):
        if _rate(v, layer) * TEMPORAL_SHARE[tid] - _rate(v, 0) <= budget:
            return tid
    return None
