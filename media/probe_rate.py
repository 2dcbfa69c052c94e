"""A probe cluster's result from its feedback (media/bwe.py's estimator; the clusters are
media/probe.py's): libwebrtc's ProbeBitrateEstimator, and the receive rate of the cluster's
later part, which a shaper's burst does not fool.

libwebrtc's rules: a cluster of >= PROBE_MIN_PACKETS received packets, and >= 80 % of those
sent when told (`sent`), gives min(send rate, receive rate), 0.95 x the receive rate when
that is under 0.9 x the send rate; refused when either interval is over 1 s or receive >
2 x send.

Added: the receive rate of what arrived after the first half of the cluster's bytes also
bounds the result. A token-bucket shaper (an ISP's, or HTB's 4 kB here) lets a cluster's
start through at line rate, so over the whole cluster the receive rate says more than the
link sustains (a 50 ms cluster at 2x a 300 kbit/s ward's estimate passed entirely in the
burst: results of 590-764 kbit/s, a raise its link could not carry, a freeze); the later
half, queued behind the emptied bucket, arrives at the sustained rate. On a link without a
burst the later half arrives as it was sent, and the result is as before.
"""

from __future__ import annotations

from bisect import insort
from dataclasses import dataclass, field

PROBE_MIN_PACKETS = 4  # 0.8 x the 5 a cluster sends at least
PROBE_MIN_RECEIVED = 0.8  # kMinReceivedProbesRatio
PROBE_MAX_INTERVAL_MS = 1000.0
PROBE_MAX_RATIO = 2.0
PROBE_UNSATURATED = 0.9
PROBE_UTILIZATION = 0.95
CLUSTERS = 8  # clusters remembered (libwebrtc keeps 1 s of them)
MAX_ARRIVALS = 4096  # a cluster's arrivals kept (a receiver may report a packet twice)


@dataclass(slots=True)
class _Cluster:
    first_send: float
    last_send: float
    last_send_size: int
    first_arrival: float
    first_arrival_size: int
    last_arrival: float
    size: int = 0
    packets: int = 0
    arrivals: list[tuple[float, int]] = field(default_factory=list)  # (ms, bytes), sorted


def later_bps(arrivals: list[tuple[float, int]], size: int) -> float | None:
    """The receive rate of what arrived after the first half of `size` bytes had (as the
    whole cluster's: the packet that completes the half starts the interval, its bytes are
    not counted); None without an interval."""
    seen = 0
    for arrival, bytes_ in arrivals:
        seen += bytes_
        if 2 * seen >= size:
            interval = arrivals[-1][0] - arrival
            return (size - seen) * 8000 / interval if interval > 0 and seen < size else None
    return None


class ProbeRates:
    """The clusters' feedback so far; `add` gives a result once a cluster has enough."""

    def __init__(self) -> None:
        self._clusters: dict[int, _Cluster] = {}
        self._sent: dict[int, int] = {}  # cluster -> packets sent in it (if told)

    def sent(self, cluster: int, packets: int) -> None:
        """Cluster `cluster` was `packets` packets: its result then needs 80 % of them
        received (libwebrtc's kMinReceivedProbesRatio), not just PROBE_MIN_PACKETS."""
        if len(self._sent) >= CLUSTERS:
            del self._sent[min(self._sent)]
        self._sent[cluster] = packets

    def add(self, cluster: int, send: float, arrival: float, size: int) -> float | None:
        """One received packet of `cluster` (times in ms): the cluster's result, or None."""
        c = self._clusters.get(cluster)
        if c is None:
            if len(self._clusters) >= CLUSTERS:
                del self._clusters[min(self._clusters)]
            c = self._clusters[cluster] = _Cluster(send, send, size, arrival, size, arrival)
        if send < c.first_send:
            c.first_send = send
        if send >= c.last_send:
            c.last_send, c.last_send_size = send, size
        if arrival < c.first_arrival:
            c.first_arrival, c.first_arrival_size = arrival, size
        c.last_arrival = max(c.last_arrival, arrival)
        if len(c.arrivals) < MAX_ARRIVALS:
            insort(c.arrivals, (arrival, size))
        c.size += size
        c.packets += 1
        if c.packets < max(PROBE_MIN_PACKETS, PROBE_MIN_RECEIVED * self._sent.get(cluster, 0)):
            return None
        send_interval = c.last_send - c.first_send
        recv_interval = c.last_arrival - c.first_arrival
        if not (0 < send_interval <= PROBE_MAX_INTERVAL_MS
                and 0 < recv_interval <= PROBE_MAX_INTERVAL_MS):
            return None
        send_bps = (c.size - c.last_send_size) * 8000 / send_interval
        recv_bps = (c.size - c.first_arrival_size) * 8000 / recv_interval
        if recv_bps > PROBE_MAX_RATIO * send_bps:
            return None
        later = later_bps(c.arrivals, sum(s for _, s in c.arrivals))
        if later is not None:
            recv_bps = min(recv_bps, later)
        result = min(send_bps, recv_bps)
        if recv_bps < PROBE_UNSATURATED * send_bps:
            result = PROBE_UTILIZATION * recv_bps
        return result
