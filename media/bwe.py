"""A send-side bandwidth estimator (GCC) for a subscriber's downlink, from its transport-wide
feedback (media/twcc.parse_feedback): what libwebrtc's goog_cc runs in a browser's sender,
written small, pure and synchronous (no clock, no I/O: every input carries its time).

Inputs, per feedback: each packet's send time on our clock and size, its arrival time on the
receiver's clock or lost, and the probe cluster it belonged to (if any). Output: `estimate_bps`
and the detector's `usage`. The parts, after libwebrtc (modules/congestion_controller/goog_cc):

* **grouping** (InterArrivalDelta): packets sent within 5 ms form a group; a group arriving as a
  burst (< 5 ms after the previous one and "faster than sent") joins it; each completed group
  gives (send delta, arrival delta) against the previous one.
* **trendline** (TrendlineEstimator): the accumulated one-way delay variation, smoothed (0.9),
  over the last 20 groups; the slope of its least-squares line is the delay trend.
* **overuse detector** (its Detect + adaptive threshold): trend × min(groups, 60) × 4 against a
  threshold that follows it (k_up 0.0087, k_down 0.039, 6–600, from 12.5); over it for more than
  10 ms and two groups with a rising trend is **overusing**, under −threshold **underusing**.
* **AIMD rate control** (AimdRateControl): overusing → 0.85 × the acknowledged rate (at most
  once per round trip); normal → increase, multiplicative (8 %/s) away from the link capacity
  measured at past decreases, additive (about one packet per response time) near it; underusing
  → hold; never above 1.5 × the acknowledged rate + 10 kbit/s.
* **loss bound** (SendSideBandwidthEstimation's classic rule): over >= 20 packets, loss over
  10 % bounds the estimate at the current one × (1 − loss/2) (at most every 300 ms + RTT), under
  2 % the bound rises 8 %/s and goes once above the delay-based estimate.
* **a fall** (media/link_fall.py, not libwebrtc's): the packets queued longer and longer at
  the bottleneck arrive at the rate it delivers; under FALL_RATIO x the estimate, the
  estimate becomes 0.85 x that rate at once. The trendline, made for a paced sender's 5 ms
  groups, needs ~0.5 s to see a fall in the SFU's frame bursts (its groups are frames).
* **probes** (ProbeBitrateEstimator, media/probe_rate.py; the clusters are media/probe.py's):
  a cluster's result (min of its send rate, its receive rate and its later half's receive
  rate) becomes the estimate at once unless the detector says overusing (a result under it
  lowers it to no less than 0.85 x the acknowledged rate, GoogCcNetworkController's limit).

`SendHistory` is the send side's memory: each packet sent on a transport with its
transport-wide sequence number, send time and size, in a fixed ring (the C fan-out's
`hop_twcc`, which it and the Python path write); a parsed feedback is matched against it into
`PacketResult`s (unknown or too old sequence numbers are counted, never trusted).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

from .link_fall import FALL_RATIO, LinkFall
from .probe_rate import ProbeRates
from .twcc import TransportFeedback

# Grouping (InterArrivalDelta).
GROUP_MS = 5.0  # kSendTimeGroupLength
BURST_MS = 5.0  # kBurstDeltaThreshold
MAX_BURST_MS = 100.0  # kMaxBurstDuration
# Trendline.
WINDOW = 20
SMOOTHING = 0.9
THRESHOLD_GAIN = 4.0
MAX_DELTAS = 60  # kMinNumDeltas: the gain's cap on the number of deltas
OVERUSE_MS = 10.0  # overusing_time_threshold
K_UP, K_DOWN = 0.0087, 0.039
MAX_ADAPT_OFFSET_MS = 15.0
THRESHOLD_MIN, THRESHOLD_MAX, THRESHOLD_START = 6.0, 600.0, 12.5
# AIMD.
BETA = 0.85
MULTIPLICATIVE = 1.08  # per second
DEFAULT_RTT_MS = 200.0
# Acknowledged rate.
ACKED_WINDOW_MS = 500.0
ACKED_MIN_SPAN_MS = 100.0
# Loss.
LOSS_MIN_PACKETS = 20
LOSS_LOW, LOSS_HIGH = 0.02, 0.10
LOSS_DECREASE_INTERVAL_MS = 300.0
# Probes.
PROBE_DROP_THROUGHPUT = 0.85  # kProbeDropThroughputFraction (GoogCcNetworkController)
# After a fall (media/link_fall.py) the bottleneck's queue drains: no probe meanwhile.
FALL_HOLD_MS = 1000.0


class Usage(Enum):
    NORMAL = "normal"
    OVERUSING = "overusing"
    UNDERUSING = "underusing"


@dataclass(frozen=True, slots=True)
class PacketResult:
    """One packet a feedback reported: sent at `send_us` (our clock), `size` bytes, arrived at
    `arrival_us` (the receiver's clock) or lost (None), in probe cluster `cluster` (-1: none)."""

    send_us: int
    size: int
    arrival_us: int | None
    cluster: int = -1


@dataclass(slots=True)
class _Group:
    first_send: float
    last_send: float
    first_arrival: float
    last_arrival: float
    size: int


class _InterArrival:
    """Send-time groups and the deltas between completed ones (ms)."""

    def __init__(self) -> None:
        self.current: _Group | None = None
        self.previous: _Group | None = None

    def add(self, send: float, arrival: float, size: int) -> tuple[float, float] | None:
        current = self.current
        if current is None:
            self.current = _Group(send, send, arrival, arrival, size)
            return None
        if send < current.first_send:  # reordered across groups: ignored, as libwebrtc
            return None
        if self._new_group(current, send, arrival):
            deltas = None
            previous = self.previous
            if previous is not None:
                deltas = (current.last_send - previous.last_send,
                          current.last_arrival - previous.last_arrival)
            self.previous = current
            self.current = _Group(send, send, arrival, arrival, size)
            return deltas
        current.last_send = max(current.last_send, send)
        current.last_arrival = max(current.last_arrival, arrival)
        current.size += size
        return None

    @staticmethod
    def _new_group(current: _Group, send: float, arrival: float) -> bool:
        arrival_delta = arrival - current.last_arrival
        propagation = arrival_delta - (send - current.last_send)
        if (arrival_delta >= 0 and arrival_delta <= BURST_MS and propagation < 0
                and arrival - current.first_arrival < MAX_BURST_MS):
            return False  # a burst: the same group
        return send - current.first_send > GROUP_MS


class _Trendline:
    """The delay trend and the overuse detector with its adaptive threshold."""

    def __init__(self) -> None:
        self.deltas = 0
        self.first_arrival = -1.0
        self.accumulated = 0.0
        self.smoothed = 0.0
        self.history: deque[tuple[float, float]] = deque(maxlen=WINDOW)
        self.trend = 0.0
        self.prev_trend = 0.0
        self.threshold = THRESHOLD_START
        self.last_threshold_update = -1.0
        self.time_over = -1.0
        self.over_count = 0
        self.usage = Usage.NORMAL

    def update(self, send_delta: float, arrival_delta: float, arrival: float) -> Usage:
        if self.first_arrival < 0:
            self.first_arrival = arrival
        self.deltas = min(self.deltas + 1, 1000)
        self.accumulated += arrival_delta - send_delta
        self.smoothed = SMOOTHING * self.smoothed + (1 - SMOOTHING) * self.accumulated
        self.history.append((arrival - self.first_arrival, self.smoothed))
        trend = self.prev_trend
        if len(self.history) == WINDOW:
            trend = _slope(self.history, trend)
        self._detect(trend, send_delta, arrival)
        return self.usage

    def _detect(self, trend: float, send_delta: float, now: float) -> None:
        if self.deltas < 2:
            self.usage = Usage.NORMAL
            return
        modified = min(self.deltas, MAX_DELTAS) * trend * THRESHOLD_GAIN
        if modified > self.threshold:
            if self.time_over < 0:
                self.time_over = send_delta / 2
            else:
                self.time_over += send_delta
            self.over_count += 1
            if self.time_over > OVERUSE_MS and self.over_count > 1 and trend >= self.prev_trend:
                self.time_over = 0.0
                self.over_count = 0
                self.usage = Usage.OVERUSING
        elif modified < -self.threshold:
            self.time_over = -1.0
            self.over_count = 0
            self.usage = Usage.UNDERUSING
        else:
            self.time_over = -1.0
            self.over_count = 0
            self.usage = Usage.NORMAL
        self.prev_trend = trend
        self._adapt(modified, now)
        self.trend = trend

    def _adapt(self, modified: float, now: float) -> None:
        if self.last_threshold_update < 0:
            self.last_threshold_update = now
        size = abs(modified)
        if size > self.threshold + MAX_ADAPT_OFFSET_MS:  # a spike: the threshold stays
            self.last_threshold_update = now
            return
        k = K_DOWN if size < self.threshold else K_UP
        elapsed = min(now - self.last_threshold_update, 100.0)
        self.threshold += k * (size - self.threshold) * elapsed
        self.threshold = min(max(self.threshold, THRESHOLD_MIN), THRESHOLD_MAX)
        self.last_threshold_update = now


def _slope(points: deque[tuple[float, float]], fallback: float) -> float:
    n = len(points)
    mean_x = sum(p[0] for p in points) / n
    mean_y = sum(p[1] for p in points) / n
    num = den = 0.0
    for x, y in points:
        num += (x - mean_x) * (y - mean_y)
        den += (x - mean_x) ** 2
    return num / den if den else fallback


class _LinkCapacity:
    """The link capacity seen at past decreases (libwebrtc's LinkCapacityEstimator), kbit/s."""

    def __init__(self) -> None:
        self.estimate: float | None = None
        self.var = 0.4

    def upper(self) -> float:
        assert self.estimate is not None
        return self.estimate + 3 * math.sqrt(self.var * self.estimate)

    def lower(self) -> float:
        assert self.estimate is not None
        return self.estimate - 3 * math.sqrt(self.var * self.estimate)

    def update(self, sample_kbps: float, alpha: float) -> None:
        est = sample_kbps if self.estimate is None else (
            (1 - alpha) * self.estimate + alpha * sample_kbps)
        error = est - sample_kbps
        self.var = (1 - alpha) * self.var + alpha * error * error / max(est, 1.0)
        self.var = min(max(self.var, 0.4), 2.5)
        self.estimate = est

    def reset(self) -> None:
        self.estimate = None


class _Acked:
    """What the receiver acknowledged per second over the last 500 ms of arrivals."""

    def __init__(self) -> None:
        self.window: deque[tuple[float, int]] = deque()
        self.bytes = 0

    def add(self, arrival: float, size: int) -> None:
        self.window.append((arrival, size))
        self.bytes += size
        horizon = arrival - ACKED_WINDOW_MS
        while self.window and self.window[0][0] < horizon:
            self.bytes -= self.window.popleft()[1]

    def bps(self) -> float | None:
        if len(self.window) < 2:
            return None
        span = self.window[-1][0] - self.window[0][0]
        if span < ACKED_MIN_SPAN_MS:
            return None
        return (self.bytes - self.window[0][1]) * 8000 / span


class GccEstimator:
    """The estimate of one transport's downlink (see the module's docstring). Times in us."""

    def __init__(self, start_bps: float = 300_000, min_bps: float = 30_000,
                 max_bps: float = 20_000_000) -> None:
        self.min_bps = min_bps
        self.max_bps = max_bps
        self._delay_bps = float(start_bps)
        self._loss_bound: float | None = None
        self._last_loss_decrease = -math.inf
        self._last_loss_update = -math.inf
        self._lost = self._expected = 0
        self._groups = _InterArrival()
        self._trend = _Trendline()
        self._acked = _Acked()
        self._link = _LinkCapacity()
        self._rate_state = "hold"  # hold | increase | decrease
        self._last_change = -1.0  # ms on our clock
        self._last_decrease = -math.inf
        self._probes = ProbeRates()
        self.rtt_ms = DEFAULT_RTT_MS
        self.last_probe_bps: float | None = None
        self.last_probe_cluster = -1  # the cluster `last_probe_bps` measured
        self._probed = -1
        self.feedbacks = 0
        self._fall = LinkFall()
        self.falls = 0  # falls seen by media/link_fall.py (counted, for stats and tests)
        self.fall_bps = 0.0  # what the link delivered at the last one
        self._fell_at = -math.inf  # ms, our clock

    @property
    def usage(self) -> Usage:
        return self._trend.usage

    @property
    def delay_based_bps(self) -> float:
        return self._delay_bps

    @property
    def loss_bound_bps(self) -> float | None:
        return self._loss_bound

    @property
    def estimate_bps(self) -> float:
        bound = self._loss_bound
        value = self._delay_bps if bound is None else min(bound, self._delay_bps)
        return min(max(value, self.min_bps), self.max_bps)

    @property
    def acked_bps(self) -> float | None:
        return self._acked.bps()

    def on_feedback(self, results: list[PacketResult], now_us: int,
                    rtt_us: int | None = None) -> float:
        """One feedback's packets (in sequence-number order) at `now_us` (our clock, when it
        arrived); the new estimate."""
        self.feedbacks += 1
        if rtt_us is not None and rtt_us > 0:
            self.rtt_ms = rtt_us / 1000
        now = now_us / 1000
        received = sorted((r for r in results if r.arrival_us is not None),
                          key=lambda r: (r.arrival_us, r.send_us))
        probe: float | None = None
        for r in received:
            assert r.arrival_us is not None
            send, arrival = r.send_us / 1000, r.arrival_us / 1000
            self._acked.add(arrival, r.size)
            if r.cluster >= 0 and (result := self._probes.add(r.cluster, send, arrival,
                                                                r.size)) is not None:
                probe, self._probed = result, r.cluster
            deltas = self._groups.add(send, arrival, r.size)
            if deltas is not None:
                self._trend.update(deltas[0], deltas[1], arrival)
            self._fall.add(send, arrival, r.size)
        if received:
            self._update_delay_based(now, probe)
            fall = self._fall.rate_bps
            if fall is not None and fall < FALL_RATIO * self.estimate_bps:
                self._on_fall(fall, now)
        self._update_loss(results, now)
        return self.estimate_bps

    def draining(self, now_us: int) -> bool:
        """Whether a fall was seen within FALL_HOLD_MS (its queue may not have drained)."""
        return now_us / 1000 - self._fell_at < FALL_HOLD_MS

    def _on_fall(self, rate: float, now: float) -> None:
        """The link delivers `rate` and its queue grows: at once to BETA x it, as AIMD's
        decrease on overuse would once the trendline saw it (media/link_fall.py)."""
        self._fall.restart()
        self.falls += 1
        self.fall_bps = rate
        self._fell_at = now
        kbps = rate / 1000
        if self._link.estimate is not None and kbps < self._link.lower():
            self._link.reset()
        self._link.update(kbps, 0.05)
        self._delay_bps = min(self._delay_bps, max(BETA * rate, self.min_bps))
        self._rate_state = "hold"
        self._last_change = self._last_decrease = now

    # --- delay-based (DelayBasedBwe::MaybeUpdateEstimate + AimdRateControl) ---------------

    def _update_delay_based(self, now: float, probe: float | None) -> None:
        acked = self._acked.bps()
        usage = self._trend.usage
        if usage is Usage.OVERUSING:
            if acked is not None and self._time_to_reduce(now, acked):
                self._aimd(usage, acked, now)
            return
        if probe is not None:
            if acked is not None:  # a low result lowers to 0.85 x acknowledged at most
                probe = max(probe, min(self._delay_bps, PROBE_DROP_THROUGHPUT * acked))
            self.last_probe_bps, self.last_probe_cluster = probe, self._probed
            self._delay_bps = min(max(probe, self.min_bps), self.max_bps)
            self._link.update(probe / 1000, 0.5)
            if self._loss_bound is not None:
                self._loss_bound = max(self._loss_bound, probe)
            self._last_change = now
            return
        self._aimd(usage, acked, now)

    def _time_to_reduce(self, now: float, acked: float) -> bool:
        interval = min(max(self.rtt_ms, 10.0), 200.0)
        if now - self._last_change >= interval:
            return True
        return acked < self._delay_bps / 2

    def _aimd(self, usage: Usage, acked: float | None, now: float) -> None:
        current = self._delay_bps
        state = self._rate_state
        if usage is Usage.OVERUSING:
            state = "decrease"
        elif usage is Usage.UNDERUSING:
            state = "hold"
        elif state == "hold":
            state = "increase"
        throughput = acked if acked is not None else current
        new = current
        if self._last_change < 0:
            self._last_change = now
        if state == "increase":
            if self._link.estimate is not None and throughput / 1000 > self._link.upper():
                self._link.reset()
            elapsed = now - self._last_change
            if self._link.estimate is not None:
                new = current + self._near_max_increase(current) * elapsed / 1000
            else:
                alpha = MULTIPLICATIVE ** min(elapsed / 1000, 1.0)
                new = current + max(current * (alpha - 1), 1000 * min(elapsed / 1000, 1.0))
            self._last_change = now
        elif state == "decrease":
            decreased = BETA * throughput
            if decreased > current and self._link.estimate is not None:
                decreased = BETA * self._link.estimate * 1000
            if decreased < current:
                new = decreased
            if self._link.estimate is not None and throughput / 1000 < self._link.lower():
                self._link.reset()
            self._link.update(throughput / 1000, 0.05)
            state = "hold"
            self._last_change = now
            self._last_decrease = now
        if acked is not None:
            limit = 1.5 * acked + 10_000
            if new > current and new > limit:
                new = max(current, limit)
        self._rate_state = state
        self._delay_bps = min(max(new, self.min_bps), self.max_bps)

    def _near_max_increase(self, current: float) -> float:
        frame_bits = current / 30
        packets = math.ceil(frame_bits / (1200 * 8))
        packet_bits = frame_bits / max(packets, 1)
        response_s = (self.rtt_ms + 100) / 1000
        return max(4000.0, packet_bits / response_s)

    # --- probes (ProbeBitrateEstimator) -------------------------------------------------

    def probe_sent(self, cluster: int, packets: int) -> None:
        """Cluster `cluster` was `packets` packets: its result needs 80 % of them received."""
        self._probes.sent(cluster, packets)

    # --- loss (SendSideBandwidthEstimation::UpdateEstimate, classic) ---------------------

    def _update_loss(self, results: list[PacketResult], now: float) -> None:
        self._expected += len(results)
        self._lost += sum(1 for r in results if r.arrival_us is None)
        if self._expected < LOSS_MIN_PACKETS:
            return
        loss = self._lost / self._expected
        self._lost = self._expected = 0
        elapsed = now - self._last_loss_update if self._last_loss_update > -math.inf else 0.0
        self._last_loss_update = now
        current = self.estimate_bps
        if loss > LOSS_HIGH:
            if now - self._last_loss_decrease >= LOSS_DECREASE_INTERVAL_MS + self.rtt_ms:
                self._loss_bound = current * (1 - loss / 2)
                self._last_loss_decrease = now
        elif loss < LOSS_LOW and self._loss_bound is not None:
            seconds = min(elapsed / 1000, 1.0)
            self._loss_bound = self._loss_bound * MULTIPLICATIVE ** seconds + 1000 * seconds
            if self._loss_bound >= self._delay_bps:
                self._loss_bound = None


HISTORY = 4096  # HOP_TWCC (media/fanout_build.py): packets a transport remembers, ~2 s at
# 20 Mbit/s


class Ring(Protocol):
    """A transport's numbering (media/fanout_build.py's `hop_twcc`, which the C fan-out and
    `media.fanout.twcc_tail` write): the count of packets numbered and, by number mod
    HISTORY, each one's send time (monotonic seconds) and RTP size."""

    next: int
    time: Any
    size: Any


class PyRing:
    """A `Ring` in Python (tests, and a history without the C structs)."""

    def __init__(self) -> None:
        self.next = 0
        self.time = [0.0] * HISTORY
        self.size = [0] * HISTORY


@dataclass(frozen=True)
class HistoryStats:
    """A subscriber transport's feedback, cumulative (`Peer.downlink_feedback_stats()`)."""

    sent: int = 0  # packets numbered
    feedback: int = 0  # feedback packets read
    reported: int = 0  # packets they reported (received or lost) that we remember
    unknown: int = 0  # sequence numbers not in the history (never sent, or too old)
    malformed: int = 0  # feedback packets refused by the parser (malformed or huge)


class SendHistory:
    """The packets one transport numbered (its `Ring`); `results` matches a parsed feedback
    against them into `PacketResult`s, in sequence-number order."""

    __slots__ = ("_last_ref", "_remote_base", "cluster_of", "feedback", "highest",
                 "malformed", "reported", "ring", "unknown")

    def __init__(self, ring: Ring | None = None) -> None:
        self.ring: Ring = PyRing() if ring is None else ring
        # A packet's probe cluster by its number (media/probe.py: the clusters are ranges
        # of numbers, media included, as libwebrtc's pacer marks what it sends in one).
        self.cluster_of: Callable[[int], int] | None = None
        self._last_ref = -1  # the last feedback's 24-bit reference time
        self._remote_base = 0  # what its wraps add, in us
        self.feedback = self.reported = self.unknown = self.malformed = 0
        self.highest = -1  # the newest number a feedback reported

    def take(self, send_s: float, size: int) -> int:
        """Number one packet sent at `send_s` (what the C loop does): its sequence number."""
        ring = self.ring
        number = ring.next
        ring.time[number % HISTORY] = send_s
        ring.size[number % HISTORY] = size
        ring.next = (number + 1) & 0xFFFFFFFF
        return number & 0xFFFF

    def results(self, fb: TransportFeedback) -> list[PacketResult]:
        """The packets `fb` reports that this history holds (send times in us), arrival
        times unwrapped across the reference time's 24-bit wrap (~12 days)."""
        self.feedback += 1
        ref = fb.reference_time
        if self._last_ref >= 0:
            step = (ref - self._last_ref) & 0xFFFFFF
            if step >= 0x800000:
                step -= 0x1000000
            self._remote_base += (step - (ref - self._last_ref)) * 64_000
        self._last_ref = ref
        offset = self._remote_base
        ring = self.ring
        count = ring.next
        newest = (count - 1) & 0xFFFF
        known = min(HISTORY, count)
        times, sizes = ring.time, ring.size
        cluster_of = self.cluster_of
        out: list[PacketResult] = []
        for i, arrival in enumerate(fb.arrivals):
            behind = (newest - fb.base_seq - i) & 0xFFFF
            if behind >= known:
                self.unknown += 1
                continue
            number = count - 1 - behind
            slot = number % HISTORY
            self.reported += 1
            self.highest = max(self.highest, number)
            out.append(PacketResult(int(times[slot] * 1_000_000), int(sizes[slot]),
                                    None if arrival is None else arrival + offset,
                                    -1 if cluster_of is None else cluster_of(number)))
        return out

    def unreported_bytes(self) -> int:
        """What was numbered after the newest packet a feedback reported: still on its way
        (or lost), what a bottleneck's queue holds of it (media/link_fall.py)."""
        ring = self.ring
        first = max(self.highest + 1, ring.next - HISTORY)
        return sum(int(ring.size[n % HISTORY]) for n in range(first, ring.next))

    def stats(self) -> HistoryStats:
        return HistoryStats(self.ring.next, self.feedback, self.reported, self.unknown,
                            self.malformed)
