"""Padding probes on a subscriber's downlink (media/probe.py): the cluster's pacing and bounds,
its packets tagged through the send history, the estimator's result from it (media/bwe.py)
through a modelled link (tests/media/test_bwe.py's drop-tail bottleneck), and the spacing,
back-off and abandonment that bound what probing costs a weak link."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from media.bwe import GccEstimator, PacketResult, SendHistory
from media.fanout import PADDING_MAX
from media.probe import (
    CLUSTER_S,
    MAX_SPACING_S,
    MIN_CLUSTER_BYTES,
    SPACING_S,
    TICK_S,
    Prober,
    duration,
    max_target,
)

from .test_bwe import Link

PADDING_SIZE = PADDING_MAX + 20  # what Consumer.send_padding's packet measures


@dataclass
class Wire:
    """One transport: everything numbered goes through `link`; feedback every 50 ms."""

    link: Link
    start_bps: float = 300_000
    history: SendHistory = field(default_factory=SendHistory)
    arrivals: list[float | None] = field(default_factory=list)  # ms, by number
    reported: int = 0
    padding: int = 0
    timers: list[tuple[float, Callable[[], None]]] = field(default_factory=list)
    t: float = 10.0  # seconds

    def __post_init__(self) -> None:
        self.bwe = GccEstimator(start_bps=self.start_bps)
        self.prober = Prober(self.history, self.bwe, self._pad, 20_000_000,
                             schedule=lambda delay, cb: self.timers.append((self.t + delay, cb)),
                             clock=lambda: self.t)

    def _send(self, size: int, now: float) -> None:
        self.history.take(now, size)
        self.arrivals.append(self.link.send(now * 1000, size))

    def _pad(self, padding: int, now: float) -> int:
        self._send(20 + padding, now)
        self.padding += 1
        return 20 + padding

    def media(self, size: int = 1200) -> int:
        """A forwarded packet now: its transport-wide number."""
        self._send(size, self.t)
        return self.history.ring.next - 1

    def feedback(self) -> list[PacketResult]:
        """What the receiver reports now (arrived by now; lost ones as lost)."""
        now_ms = self.t * 1000
        end = self.reported
        while end < len(self.arrivals) and ((a := self.arrivals[end]) is None or a <= now_ms):
            end += 1
        ring = self.history.ring
        results = [PacketResult(int(ring.time[i] * 1e6), ring.size[i],
                                None if self.arrivals[i] is None else int(self.arrivals[i] * 1000),  # type: ignore[operator]
                                self.prober.cluster_of(i)) for i in range(self.reported, end)]
        self.reported = end
        if results:
            self.bwe.on_feedback(results, int(self.t * 1e6))
            self.prober.on_feedback(results, self.t)
        return results

    def run(self, seconds: float, media_bps: float = 150_000) -> None:
        """Media at `media_bps` every 5 ms, timers fired, feedback every 50 ms."""
        end, credit, step = self.t + seconds, 0.0, 0
        while self.t < end - 1e-9:
            self.t = round(self.t + TICK_S, 6)
            step += 1
            credit += media_bps * TICK_S / 8
            while credit >= 1200:
                self.media()
                credit -= 1200
            due = [cb for at, cb in self.timers if at <= self.t + 1e-9]
            self.timers = [(at, cb) for at, cb in self.timers if at > self.t + 1e-9]
            for cb in due:
                cb()
            if step % 10 == 0:
                self.feedback()


def test_a_cluster_is_padding_paced_at_its_target_capped_at_twice_the_estimate() -> None:
    wire = Wire(Link(20_000_000), start_bps=2_000_000)
    wire.run(1.0)
    estimate = wire.bwe.estimate_bps
    assert wire.prober.request(50_000_000, wire.t)  # far above: capped
    first = wire.history.ring.next
    wire.run(CLUSTER_S + 0.01, media_bps=0)
    sent = wire.history.ring.next - first
    target_bytes = 2 * estimate * CLUSTER_S / 8
    assert wire.padding == sent
    assert target_bytes <= sent * PADDING_SIZE < target_bytes + 2 * PADDING_SIZE
    times = [wire.history.ring.time[i] for i in range(first, first + sent)]
    assert max(times) - min(times) >= CLUSTER_S - 2 * TICK_S  # paced, not one burst


def test_on_a_weak_estimate_a_cluster_carries_min_bytes_and_its_queue_stays_bounded() -> None:
    """At 300 kbit/s a 50 ms cluster is ~3.75 kB, inside a shaper's burst: it lasts until
    it carries MIN_CLUSTER_BYTES, and its target is lowered so that the padding beyond the
    estimate queues at most 100 ms of it on a link at the estimate."""
    wire = Wire(Link(20_000_000))
    wire.run(1.0)
    estimate = wire.bwe.estimate_bps
    assert wire.prober.request(2 * estimate, wire.t)
    target = max_target(estimate)
    assert estimate < target < 2 * estimate
    first = wire.history.ring.next
    wire.run(duration(target) + 0.01, media_bps=0)
    sent = wire.history.ring.next - first
    assert MIN_CLUSTER_BYTES <= sent * PADDING_SIZE < MIN_CLUSTER_BYTES + 2 * PADDING_SIZE
    times = [wire.history.ring.time[i] for i in range(first, first + sent)]
    assert max(times) - min(times) >= duration(target) - 2 * TICK_S
    assert (target - estimate) * duration(target) == pytest.approx(0.1 * estimate)


def test_what_is_sent_during_a_cluster_media_included_is_tagged_with_it() -> None:
    wire = Wire(Link(20_000_000), start_bps=2_000_000)
    wire.run(0.5)
    before = wire.media()
    assert wire.prober.request(3_000_000, wire.t)
    during = wire.media()
    wire.run(CLUSTER_S + 0.01, media_bps=0)
    after = wire.media()
    assert wire.prober.cluster_of(before) == -1
    assert wire.prober.cluster_of(during) == 0
    assert wire.prober.cluster_of(after) == -1
    results = wire.feedback()  # what the receiver reports carries the cluster
    assert any(r.cluster == 0 for r in results)


def test_a_probe_the_link_carries_lifts_the_estimate_at_once_and_the_next_comes_soon() -> None:
    wire = Wire(Link(5_000_000))
    wire.run(2.0)
    before = wire.bwe.estimate_bps
    assert before < 400_000  # 1.5x the 150k acknowledged, and no more
    assert wire.prober.request(2 * before, wire.t)
    wire.run(duration(max_target(before)) + 0.1)  # sent, and its feedback back
    assert wire.prober.stats.lifted == 1 and wire.prober.stats.failed == 0
    assert wire.bwe.estimate_bps >= 0.9 * max_target(before)
    assert wire.prober.spacing_s == SPACING_S
    assert not wire.prober.request(10 * before, wire.t)  # spaced
    wire.run(SPACING_S)
    assert wire.prober.request(10 * before, wire.t)


def test_a_probe_on_a_shaped_link_is_not_fooled_by_its_burst() -> None:
    """A 300 kbit/s token bucket holding 4 kB (testkit/netem.py's HTB): a 50 ms cluster at
    2x passed in the burst and lifted the estimate to ~2x (issue 15: 590-764 kbit/s on a
    300 kbit/s ward, a layer raised, a freeze); now the result is the link's rate."""
    wire = Wire(Link(300_000, burst_bytes=4000))
    wire.run(3.0)
    estimate = wire.bwe.estimate_bps
    assert wire.prober.request(2 * estimate, wire.t)
    wire.run(0.6)
    assert wire.prober.stats.lifted == 0, wire.prober.stats
    assert wire.bwe.estimate_bps <= 330_000
    assert all(a is not None for a in wire.arrivals)


def test_a_probe_into_a_bottleneck_finds_the_link_and_backs_off() -> None:
    wire = Wire(Link(300_000))
    wire.run(3.0)
    estimate = wire.bwe.estimate_bps
    assert wire.prober.request(2 * estimate, wire.t)
    wire.run(0.5)
    assert wire.prober.stats.failed == 1 and wire.prober.stats.lifted == 0
    assert wire.bwe.estimate_bps <= 330_000  # what got through: the link, not the target
    assert wire.prober.spacing_s == 2 * SPACING_S
    for _ in range(6):  # keeps failing: spaced up to MAX_SPACING_S, no more
        wire.run(wire.prober.spacing_s)
        assert wire.prober.request(2 * wire.bwe.estimate_bps, wire.t)
        wire.run(0.5)
    assert wire.prober.spacing_s == MAX_SPACING_S
    assert wire.link.busy_until - wire.t * 1000 < 200  # the queue never filled: no loss
    assert all(a is not None for a in wire.arrivals)


def test_a_cluster_whose_feedback_shows_loss_is_abandoned() -> None:
    wire = Wire(Link(5_000_000))
    wire.run(1.0)
    wire.link.loss = 1.0  # everything from now on is lost
    assert wire.prober.request(2 * wire.bwe.estimate_bps, wire.t)
    wire.run(0.02, media_bps=0)
    sent = wire.padding
    wire.feedback()  # the lost half of the cluster reported
    wire.run(CLUSTER_S, media_bps=0)
    assert wire.prober.stats.abandoned == 1 and wire.prober.stats.failed == 1
    assert wire.padding == sent  # nothing more of it was sent


def test_no_probe_when_the_estimate_already_covers_the_target_or_while_one_is_out() -> None:
    wire = Wire(Link(5_000_000))
    wire.run(1.0)
    assert not wire.prober.request(wire.bwe.estimate_bps * 0.9, wire.t)
    assert wire.prober.request(wire.bwe.estimate_bps * 1.5, wire.t)
    assert not wire.prober.request(wire.bwe.estimate_bps * 1.5, wire.t)  # one at a time
    assert wire.prober.stats.clusters == 1


def test_a_cluster_result_waits_for_most_of_its_packets() -> None:
    """A result from the first packets of a cluster (one pacing step) says little; the
    estimator waits for 80 % of those sent (libwebrtc's kMinReceivedProbesRatio)."""
    bwe = GccEstimator(start_bps=300_000)
    bwe.probe_sent(3, 20)
    results = [PacketResult(1_000_000 + i * 1000, 1200, 1_020_000 + i * 1000, 3)
               for i in range(15)]
    bwe.on_feedback(results, 1_100_000)
    assert bwe.last_probe_bps is None
    more = [PacketResult(1_000_000 + i * 1000, 1200, 1_020_000 + i * 1000, 3)
            for i in range(15, 17)]
    bwe.on_feedback(more, 1_150_000)
    assert bwe.last_probe_bps is not None and bwe.last_probe_cluster == 3
