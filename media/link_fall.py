"""A link that falls below what is sent, seen in the first feedback that shows it (issue 15).

GCC's trendline (media/bwe.py) was made for a paced sender: libwebrtc's pacer sends every
5 ms, so its 20 send-time groups span ~0.1 s. The SFU forwards a video frame as the burst it
arrived in, so a group is a frame: 20 groups span 1.3 s at 15 fps and the smoothing (0.9 per
group) half a second. A rate drop from 4 Mbit/s to 500 kbit/s under a ~1.1 Mbit/s layer
was read as overuse only 0.56 s after the fall (bench/network.py, rate_drop), when the
bottleneck's 200 ms queue had overflowed 0.2 s before: the top layer's frames were lost
and the picture froze until the lower layer's keyframe crossed the drained queue (0.52 s).

What the same feedback already says much earlier: packets that queue longer and longer at
the bottleneck arrive at the rate it delivers. Per received packet (in arrival order) its
queuing delay is its one-way delay (arrival on the receiver's clock minus send on ours)
above the least one-way delay seen over BASE_WINDOW_MS (the clocks' offset; the window
bounds their drift). A run of packets each queued at least BUSY_MS found the bottleneck
busy between them (each arrived within its own queuing delay of the one before), so their
bytes over their arrival span (the last RATE_WINDOW_MS of the
run) are what it delivered to this transport (video and padding: audio is not numbered, so
the rate is video's share, as the estimate is). When such a run spans MIN_SPAN_MS, with
MIN_PACKETS packets, and the queue grew by MIN_GROWTH_MS over it (sent faster than it
drains), that rate is the link's: `LinkFall.rate_bps`. The estimator acts on it only when
it is under FALL_RATIO x its estimate (a fall, not the estimate's own noise; a probe on a
link at the estimate measures about the estimate).

Nothing here is fooled by a keyframe on a fast link: its burst queues, but arrives at line
rate, above the estimate; nor by a receiver that stalls (its packets are stamped together,
again at a high rate). Nor by a stall in the middle of a burst: the SFU's thread or the
shaping qdisc descheduled for tens of ms on a loaded machine (test_weak_links at load 8-18)
delays the rest of a burst at once: its queue grows and the run's bytes over its span look
like a slow link, but the gap is one. A bottleneck spaces every packet; so the rate is
taken without the run's longest arrival gap (and the packet after it), which leaves a
fall's rate as it was (its gaps are alike: +5 % on a 4-packet run) and a stall's at line
rate. 4 Mbit/s -> 500 kbit/s: the first top-layer frame after the fall,
8 packets at 19 ms each, shows it (see tests/media/test_link_fall.py).
"""

from __future__ import annotations

from collections import deque

BASE_WINDOW_MS = 10_000.0
BUSY_MS = 10.0
RATE_WINDOW_MS = 250.0
MIN_SPAN_MS = 60.0
MIN_PACKETS = 4
MIN_GROWTH_MS = 40.0
FALL_RATIO = 0.7


class LinkFall:
    """One transport's queuing delay and the rate of the packets queued (module docstring).
    Times in ms: send on our clock, arrival on the receiver's."""

    def __init__(self) -> None:
        self._mins: deque[tuple[float, float]] = deque()  # (arrival, delay), delay rising
        self._run: deque[tuple[float, float, int]] = deque()  # (arrival, queued, size)
        self._run_bytes = 0  # of the run's packets after its first
        self.queue_ms = 0.0  # the last packet's queuing delay

    def add(self, send: float, arrival: float, size: int) -> None:
        """One packet received (call in arrival order)."""
        delay = arrival - send
        mins = self._mins
        while mins and mins[-1][1] >= delay:
            mins.pop()
        mins.append((arrival, delay))
        while mins[0][0] < arrival - BASE_WINDOW_MS:
            mins.popleft()
        queued = delay - mins[0][1]
        self.queue_ms = queued
        run = self._run
        # It waited behind the previous one (queued since before that one arrived): the
        # bottleneck was busy between them. Otherwise a new run starts with it.
        if run and queued >= BUSY_MS and 0 <= arrival - run[-1][0] <= queued:
            self._run_bytes += size
        else:
            run.clear()
            self._run_bytes = 0
        run.append((arrival, queued, size))
        while len(run) > 2 and run[1][0] < arrival - RATE_WINDOW_MS:
            run.popleft()
            self._run_bytes -= run[0][2]  # the new first one's bytes no longer count

    @property
    def rate_bps(self) -> float | None:
        """What the bottleneck delivers, if the newest packets show its queue growing."""
        run = self._run
        if len(run) < MIN_PACKETS:
            return None
        (first, queued_first, _), (last, queued_last, _) = run[0], run[-1]
        span = last - first
        if span < MIN_SPAN_MS or queued_last - queued_first < MIN_GROWTH_MS:
            return None
        # Its longest gap left out: a stall of either end's, not the link's spacing (above).
        longest, after = 0.0, 0
        previous = first
        for arrival, _, size in run:
            if arrival - previous > longest:
                longest, after = arrival - previous, size
            previous = arrival
        if span - longest <= 0:
            return None
        return (self._run_bytes - after) * 8000 / (span - longest)

    def restart(self) -> None:
        """Acted on: the next fall is measured on packets that arrive from now on."""
        self._run.clear()
        self._run_bytes = 0
