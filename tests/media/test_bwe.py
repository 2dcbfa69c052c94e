"""The send-side estimator (media/bwe.py) on synthetic traces: a paced sender following its
estimate through a modelled bottleneck (rate, drop-tail queue, one-way delay, random loss),
the receiver's feedback every 50 ms; and the send history matching a parsed feedback."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from media import twcc
from media.bwe import GccEstimator, PacketResult, SendHistory, Usage

PACKET = 1200
FEEDBACK_MS = 50


@dataclass
class Link:
    rate_bps: float
    queue_ms: float = 200.0  # drop-tail: a packet that would wait longer is dropped
    delay_ms: float = 20.0
    loss: float = 0.0
    # A token bucket of this many bytes (a shaper's burst, as testkit/netem.py's HTB): a
    # packet leaves at once while it holds the packet's bytes, refilled at the rate.
    burst_bytes: int = 0
    rng: random.Random = field(default_factory=lambda: random.Random(1))
    busy_until: float = 0.0
    tokens: float = 0.0  # the bucket's bytes at busy_until

    def send(self, t: float, size: int) -> float | None:
        if self.loss and self.rng.random() < self.loss:
            return None
        start = max(t, self.busy_until)
        if self.burst_bytes:  # leaves once the bucket holds its bytes
            per_ms = self.rate_bps / 8000
            tokens = min(self.burst_bytes, self.tokens + (start - self.busy_until) * per_ms)
            leave = start + max(0.0, size - tokens) / per_ms
            if leave - t > self.queue_ms:
                return None
            self.tokens = min(self.burst_bytes, tokens + (leave - start) * per_ms) - size
            self.busy_until = leave
            return leave + self.delay_ms
        if start - t > self.queue_ms:
            return None
        self.busy_until = start + size * 8000 / self.rate_bps
        return self.busy_until + self.delay_ms


@dataclass
class Sim:
    """A sender pacing at the estimate every 5 ms (up to `source_bps`) and its feedback."""

    link: Link
    bwe: GccEstimator
    source_bps: float = 5_000_000
    t: float = 0.0
    sent: list[tuple[float, int, float | None, int]] = field(default_factory=list)
    reported: int = 0
    credit: float = 0.0
    trace: list[tuple[float, float]] = field(default_factory=list)

    def send(self, t: float, size: int = PACKET, cluster: int = -1) -> None:
        self.sent.append((t, size, self.link.send(t, size), cluster))

    def feedback(self, t: float) -> None:
        arrived = [i for i in range(self.reported, len(self.sent))
                   if (at := self.sent[i][2]) is not None and at <= t]
        if not arrived:
            return
        end = max(arrived) + 1
        results = []
        for i in range(self.reported, end):
            send, size, arrival, cluster = self.sent[i]
            late = arrival is not None and arrival > t
            results.append(PacketResult(int(send * 1000), size,
                                        None if arrival is None or late else int(arrival * 1000),
                                        cluster))
        self.reported = end
        now = t + self.link.delay_ms
        self.bwe.on_feedback(results, int(now * 1000), rtt_us=int(2 * self.link.delay_ms * 1000))
        self.trace.append((now, self.bwe.estimate_bps))

    def run(self, seconds: float) -> None:
        end = self.t + seconds * 1000
        while self.t < end:
            self.t += 5
            self.credit += min(self.bwe.estimate_bps, self.source_bps) * 0.005 / 8
            while self.credit >= PACKET:
                self.send(self.t)
                self.credit -= PACKET
            if self.t % FEEDBACK_MS == 0:
                self.feedback(self.t)

    def estimate_at(self, ms: float) -> float:
        return [e for t, e in self.trace if t <= ms][-1]


def on_a_300_kbit_link() -> Sim:
    """A sender at ~400 kbit/s on a clean link (its estimate climbed from 300k for 4 s), then
    the link falls to 300 kbit/s with a 200 ms drop-tail queue."""
    sim = Sim(Link(5_000_000), GccEstimator(start_bps=300_000), source_bps=800_000)
    sim.run(4.0)
    assert sim.bwe.estimate_bps > 380_000
    sim.link.rate_bps = 300_000
    return sim


def test_a_300_kbit_bottleneck_brings_the_estimate_under_it_within_2_s() -> None:
    sim = on_a_300_kbit_link()
    drop = sim.t
    sim.run(2.0)
    under = [t for t, e in sim.trace if t > drop and e < 300_000]
    assert under and under[0] - drop < 2000
    assert sim.bwe.usage is not Usage.NORMAL or sim.bwe.estimate_bps < 330_000


def test_on_a_300_kbit_bottleneck_the_estimate_follows_the_link() -> None:
    """GCC's sawtooth: down to 0.85 × what arrives at each overuse, climbing back slowly
    near the link capacity it measured; on average at the link, never far above it."""
    sim = on_a_300_kbit_link()
    sim.run(2.0)
    start = sim.t
    sim.run(10.0)
    late = [e for t, e in sim.trace if t > start]
    assert 240_000 < sum(late) / len(late) < 320_000
    assert max(late) < 360_000 and min(late) > 200_000
    assert sim.bwe.loss_bound_bps is None  # the delay kept the queue from overflowing


def test_the_estimate_rises_again_when_the_link_is_restored() -> None:
    sim = on_a_300_kbit_link()
    sim.run(6.0)
    assert sim.bwe.estimate_bps < 350_000
    sim.link.rate_bps = 2_500_000
    sim.run(10.0)
    assert sim.bwe.estimate_bps > 550_000
    rising = [e for t, e in sim.trace if t > sim.t - 5000]
    assert rising == sorted(rising)


def test_after_the_link_is_restored_a_probe_finds_it_within_a_round_trip() -> None:
    """Without a probe the climb is ~8 %/s; a cluster at 2 Mbit/s shows the room at once."""
    sim = on_a_300_kbit_link()
    sim.run(6.0)
    sim.link.rate_bps = 2_500_000
    sim.run(0.5)
    assert sim.bwe.estimate_bps < 400_000
    probe(sim, 2_000_000, cluster=7)
    sim.run(0.1)
    assert sim.bwe.estimate_bps >= 0.9 * 2_000_000


def probe(sim: Sim, rate: float, cluster: int, packets: int = 10) -> None:
    gap = PACKET * 8000 / rate  # ms between packets
    t = sim.t + 1
    for i in range(packets):
        sim.send(t + i * gap, cluster=cluster)


def test_a_clean_link_keeps_the_estimate_rising_to_the_source() -> None:
    sim = Sim(Link(20_000_000), GccEstimator(start_bps=300_000), source_bps=1_000_000)
    sim.run(10.0)
    assert sim.bwe.estimate_bps > 600_000
    assert sim.bwe.loss_bound_bps is None


def test_loss_over_10_percent_bounds_the_estimate() -> None:
    """20 % random loss with no queue: the delay sees nothing, the loss rule bounds."""
    sim = Sim(Link(20_000_000, loss=0.2), GccEstimator(start_bps=1_000_000),
              source_bps=1_000_000)
    sim.run(3.0)
    assert sim.bwe.loss_bound_bps is not None
    assert sim.bwe.estimate_bps < 600_000
    assert sim.bwe.delay_based_bps > sim.bwe.estimate_bps


def test_loss_under_2_percent_lets_the_bound_go() -> None:
    sim = Sim(Link(20_000_000, loss=0.2), GccEstimator(start_bps=1_000_000),
              source_bps=1_000_000)
    sim.run(2.0)
    bound = sim.bwe.loss_bound_bps
    assert bound is not None
    sim.link.loss = 0.0
    sim.run(1.0)
    later = sim.bwe.loss_bound_bps
    assert later is None or later > bound


def test_a_probe_cluster_over_an_uncongested_link_lifts_the_estimate_at_once() -> None:
    sim = Sim(Link(10_000_000), GccEstimator(start_bps=300_000), source_bps=300_000)
    sim.run(3.0)
    before = sim.bwe.estimate_bps
    assert before < 600_000
    rate = 2_000_000
    probe(sim, rate, cluster=1)
    sim.run(0.1)  # the next feedback (within 50 ms) carries the cluster
    assert sim.bwe.last_probe_bps is not None
    assert sim.bwe.estimate_bps >= 0.9 * rate


def test_a_probe_into_a_bottleneck_reports_what_got_through() -> None:
    sim = Sim(Link(800_000), GccEstimator(start_bps=300_000), source_bps=300_000)
    sim.run(3.0)
    probe(sim, 2_000_000, cluster=2)
    sim.run(0.3)
    assert sim.bwe.last_probe_bps is not None
    assert 600_000 < sim.bwe.last_probe_bps < 900_000


def test_feedback_without_any_packet_received_changes_nothing() -> None:
    bwe = GccEstimator(start_bps=500_000)
    assert bwe.on_feedback([PacketResult(i * 1000, 1200, None) for i in range(5)], 10_000) \
        == 500_000


# --- SendHistory -----------------------------------------------------------------------------


def test_send_history_numbers_packets_and_matches_a_feedback() -> None:
    history = SendHistory()
    history.ring.next = 0xFFFE  # the numbering wraps within the test
    seqs = [history.take(i / 1000, 1000 + i) for i in range(6)]
    assert seqs == [0xFFFE, 0xFFFF, 0, 1, 2, 3]
    # The receiver got all but seq 0, 1 ms apart (four 250 us ticks).
    symbols = [1, 1, 0, 1, 1, 1]
    packet = twcc.build_feedback(1, 2, 0xFFFE, 100, 0, symbols, [0, 4, 4, 4, 4])
    results = history.results(twcc.parse_feedback(packet))
    assert [r.size for r in results] == [1000, 1001, 1002, 1003, 1004, 1005]
    assert [r.send_us for r in results] == [0, 1000, 2000, 3000, 4000, 5000]
    base = 100 * 64_000
    assert [r.arrival_us for r in results] == [base, base + 1000, None, base + 2000,
                                               base + 3000, base + 4000]
    assert history.stats().reported == 6 and history.stats().unknown == 0


def test_send_history_counts_sequence_numbers_it_never_sent_or_forgot() -> None:
    history = SendHistory()
    for i in range(5000):  # the first 904 are out of the ring
        history.take(i / 1e6, 100)
    never = twcc.build_feedback(1, 2, 5000, 0, 0, [1] * 3, [0, 1, 1])
    forgotten = twcc.build_feedback(1, 2, 10, 0, 0, [1] * 3, [0, 1, 1])
    assert history.results(twcc.parse_feedback(never)) == []
    assert history.results(twcc.parse_feedback(forgotten)) == []
    assert history.stats().unknown == 6
    kept = twcc.build_feedback(1, 2, 4999, 0, 0, [1], [0])
    assert len(history.results(twcc.parse_feedback(kept))) == 1


def test_send_history_unwraps_the_reference_time() -> None:
    history = SendHistory()
    history.take(0, 100)
    history.take(1, 100)
    first = history.results(twcc.parse_feedback(
        twcc.build_feedback(1, 2, 0, 0xFFFFFF, 0, [1], [0])))
    second = history.results(twcc.parse_feedback(
        twcc.build_feedback(1, 2, 1, 0, 1, [1], [0])))
    assert first[0].arrival_us is not None and second[0].arrival_us is not None
    assert second[0].arrival_us - first[0].arrival_us == 64_000


def test_a_receiver_reporting_nonsense_keeps_the_estimate_within_its_bounds() -> None:
    """Arrival times are the receiver's word: random, backwards, all equal, hours apart."""
    rng = random.Random(3)
    bwe = GccEstimator(start_bps=500_000, min_bps=30_000, max_bps=10_000_000)
    now = 0
    for _ in range(300):
        now += 50_000
        results = [PacketResult(now - rng.randrange(100_000), rng.randrange(1, 1500),
                                rng.choice((None, 0, rng.randrange(-1 << 40, 1 << 40),
                                            now + rng.randrange(1000))),
                                rng.choice((-1, -1, 1, 2)))
                   for _ in range(rng.randrange(0, 60))]
        estimate = bwe.on_feedback(results, now)
        assert 30_000 <= estimate <= 10_000_000
