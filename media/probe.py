"""Probing a subscriber's downlink with padding (transport-cc negotiated: media/bwe.py).

A send-side estimate says at most ~1.5x what is acknowledged, so a subscriber sent its low
layer never "sees" room for the next one: the SFU must send more to find out. As
libwebrtc's pacer and mediasoup do, a **probe cluster** is a short burst at a target rate:
padding-only RTP on a video consumer's RTX SSRC (`Consumer.send_padding`), paced over
CLUSTER_S, or longer until its padding is MIN_CLUSTER_BYTES, every packet numbered on the
transport's transport-wide sequence. The cluster is a range of those numbers (media
packets sent meanwhile included, as the pacer marks whatever it sends during a probe);
`SendHistory.cluster_of` tags the feedback's packets with it and the estimator's probe
result (media/probe_rate.py: min of the send rate, the receive rate and the receive rate
of the cluster's later half) sets the estimate at once when the link carries it. Only then
does the allocator raise a layer (media/allocator.py, `Allocation.probe_bps`): a probe the
link cannot carry costs no freeze, the layer was not switched.

Why MIN_CLUSTER_BYTES: a token-bucket shaper (an ISP's; HTB's 4 kB here) lets a cluster's
start through at line rate, and a cluster at 2x a 300 kbit/s estimate lasts ~100 ms in a
4 kB bucket; with 12 kB its later half, whose receive rate bounds the result, queues
behind the emptied bucket and arrives at the rate the link sustains.

Bounded: a probe's rate is at most MAX_STEP x the estimate (libwebrtc's further-probing
step: a link at the estimate then queues at most CLUSTER_S x the estimate's worth, under
its queue), `cap_bps`, and `max_target`: a cluster made longer to carry MIN_CLUSTER_BYTES
(estimates under ~1 Mbit/s) queues at most MAX_QUEUE_S of the estimate with its padding
beyond it on a link at the estimate (the media sent meanwhile comes on top); clusters last
at most MAX_CLUSTER_S. Probes are SPACING_S apart, doubled after each one that did not
lift the estimate (up to MAX_SPACING_S); a cluster whose feedback shows loss or overuse
while it is being sent is abandoned (the rest is not sent), and one with no result within
RESULT_WAIT_S failed. None while the estimator says overusing, nor within a second of a
link's fall (media/link_fall.py): padding then would queue ahead of the lower layer's
keyframe.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .bwe import GccEstimator, PacketResult, SendHistory, Usage
from .fanout import PADDING_MAX

CLUSTER_S = 0.05  # a cluster's length at least (libwebrtc: >= 15 ms and 5 packets)
MIN_CLUSTER_BYTES = 12_000  # ...and its padding at least (3x HTB's 4 kB burst)
MAX_CLUSTER_S = 0.5  # ...and its length at most (results need intervals under 1 s)
MAX_QUEUE_S = 0.1  # a long cluster's padding over the estimate: this much of it at most
TICK_S = 0.005  # the pacer's step
MIN_PACKETS = 5
MAX_STEP = 2.0  # a probe is at most this x the estimate
SPACING_S = 0.5  # after a probe that lifted the estimate (its result is back within ~0.2 s)
MAX_SPACING_S = 3.0  # also how late a restored link may be found: adapt_up_s <= 10 s
RESULT_WAIT_S = 1.0
LIFTED = 0.8  # a result >= this x the target lifted the estimate (the probe succeeded)
CLUSTERS = 8  # clusters remembered (their feedback comes within a round trip)

Pad = Callable[[int, float], int | None]  # (padding bytes, now) -> RTP size sent, or None
Schedule = Callable[[float, Callable[[], None]], Any]  # call_later


def duration(padding_bps: float) -> float:
    """How long a cluster at `padding_bps` lasts: CLUSTER_S, or what MIN_CLUSTER_BYTES takes
    at that rate, up to MAX_CLUSTER_S."""
    return min(MAX_CLUSTER_S, max(CLUSTER_S, MIN_CLUSTER_BYTES * 8 / padding_bps))


def max_target(estimate_bps: float) -> float:
    """The highest target whose cluster, on a link at `estimate_bps`, queues at most
    MAX_QUEUE_S of it: (target - estimate) x duration(target) <= MAX_QUEUE_S x estimate.
    Over CLUSTER_S it lasts MIN_CLUSTER_BYTES / target, so target <= estimate x bytes /
    (bytes - MAX_QUEUE_S x estimate); capped at MAX_CLUSTER_S it queues less; at CLUSTER_S
    MAX_STEP keeps it within (2x queues CLUSTER_S of the estimate)."""
    bits, room = MIN_CLUSTER_BYTES * 8, MAX_QUEUE_S * estimate_bps
    return estimate_bps * bits / (bits - room) if room < bits else float("inf")


@dataclass
class ProbeStats:
    """A transport's probes, cumulative (`Peer.downlink_probe_stats()`)."""

    clusters: int = 0  # clusters started
    lifted: int = 0  # results that lifted the estimate to >= LIFTED x the target
    failed: int = 0  # results below that, or none within RESULT_WAIT_S
    abandoned: int = 0  # stopped while sending: loss or overuse in their feedback
    padding_bytes: int = 0


@dataclass
class _Cluster:
    id: int
    target_bps: float
    padding_bps: float
    duration_s: float
    first: int  # its transport-wide numbers: [first, end)
    end: int
    started: float
    sent_bytes: int = 0
    packets: int = 0
    done: bool = False  # sending finished (or abandoned)
    judged: bool = False


class Prober:
    """One subscriber transport's probe clusters (the module's docstring)."""

    def __init__(self, history: SendHistory, bwe: GccEstimator, pad: Pad, cap_bps: float,
                 schedule: Schedule | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._history = history
        self._bwe = bwe
        self._pad = pad
        self.cap_bps = cap_bps
        self._schedule = schedule
        self._clock = clock
        self._clusters: deque[_Cluster] = deque(maxlen=CLUSTERS)
        self._next_id = 0
        self._sending: _Cluster | None = None
        self._next_at = 0.0  # no probe before this
        self.spacing_s = SPACING_S
        self.stats = ProbeStats()
        history.cluster_of = self.cluster_of

    @property
    def probing(self) -> bool:
        """A cluster is being sent or waits for its result."""
        return any(not c.judged for c in self._clusters)

    def cluster_of(self, number: int) -> int:
        for c in self._clusters:
            if c.first <= number < c.end:
                return c.id
        return -1

    def request(self, target_bps: float, now: float) -> bool:
        """The allocator would raise a layer if the estimate were `target_bps`: probe
        towards it (capped) if none is under way and the spacing allows; True if started."""
        estimate = self._bwe.estimate_bps
        if self.probing or now < self._next_at or target_bps <= estimate \
                or self._bwe.usage is Usage.OVERUSING \
                or self._bwe.draining(int(now * 1_000_000)):
            return False
        target = min(target_bps, MAX_STEP * estimate, self.cap_bps, max_target(estimate))
        if target <= estimate:
            return False
        # Padding alone at the target: media comes in frame bursts (one or none in a
        # cluster), so counting on it left clusters short (results ~0.5x the target).
        padding_bps = target
        first = self._history.ring.next
        cluster = _Cluster(self._next_id, target, padding_bps, duration(padding_bps), first,
                           first, now)
        self._next_id += 1
        self._clusters.append(cluster)
        self._sending = cluster
        self.stats.clusters += 1
        # Its result needs most of it received, not a first few packets of one pacing step.
        self._bwe.probe_sent(cluster.id, max(MIN_PACKETS, int(
            padding_bps * cluster.duration_s / 8 / (PADDING_MAX + 20))))
        self.tick(now)
        return True

    def tick(self, now: float | None = None) -> None:
        """Send what the cluster owes by now (paced), then wait TICK_S for the next step."""
        cluster = self._sending
        if cluster is None:
            return
        now = self._clock() if now is None else now
        elapsed = min(now - cluster.started, cluster.duration_s)
        due = cluster.padding_bps * elapsed / 8 - cluster.sent_bytes
        last = elapsed >= cluster.duration_s
        while due > 0 or (last and cluster.packets < MIN_PACKETS):
            size = self._pad(PADDING_MAX, now)
            if size is None:  # no consumer can carry padding now
                break
            cluster.sent_bytes += size
            cluster.packets += 1
            due -= size
        cluster.end = self._history.ring.next
        if last:
            self._finish(cluster)
            return
        self._later(TICK_S, self.tick)

    def _finish(self, cluster: _Cluster) -> None:
        cluster.done = True
        cluster.end = self._history.ring.next
        self._sending = None
        self.stats.padding_bytes += cluster.sent_bytes
        self._bwe.probe_sent(cluster.id, cluster.end - cluster.first)
        if cluster.packets == 0:
            self._judge(cluster, None, self._clock())

    def _later(self, delay: float, callback: Callable[[], None]) -> None:
        if self._schedule is not None:
            self._schedule(delay, callback)
        else:
            asyncio.get_running_loop().call_later(delay, callback)

    def on_feedback(self, results: list[PacketResult], now: float) -> None:
        """After the estimator took a feedback: a cluster being sent that shows loss or
        overuse is abandoned; a sent one is judged by its result (or its absence)."""
        bwe = self._bwe
        for cluster in self._clusters:
            if cluster.judged:
                continue
            lost = any(r.cluster == cluster.id and r.arrival_us is None for r in results)
            if not cluster.done and (lost or bwe.usage is Usage.OVERUSING):
                self.stats.abandoned += 1
                self._finish(cluster)
                self._judge(cluster, None, now)
            elif cluster.done and bwe.last_probe_cluster == cluster.id:
                self._judge(cluster, bwe.last_probe_bps, now)
            elif cluster.done and (lost or bwe.usage is Usage.OVERUSING
                                   or now - cluster.started > RESULT_WAIT_S):
                self._judge(cluster, None, now)

    def _judge(self, cluster: _Cluster, result: float | None, now: float) -> None:
        cluster.judged = True
        if result is not None and result >= LIFTED * cluster.target_bps:
            self.stats.lifted += 1
            self.spacing_s = SPACING_S
        else:
            self.stats.failed += 1
            self.spacing_s = min(self.spacing_s * 2, MAX_SPACING_S)
        self._next_at = now + self.spacing_s
