"""The retransmission budget of a subscriber transport (media/rtx_budget.py) and the consumer's
use of it: a share of the downlink estimate, one resend per packet per round trip."""

from __future__ import annotations

from media.rtx_budget import RtxBudget, RtxOutcome

from .fakes import VP8_DELTA, VP8_KEY, headers, make_producer, packet
from .test_consumer import consumer_for

SIZE = 1_000


def test_without_a_basis_nothing_is_refused_for_bytes() -> None:
    budget = RtxBudget()
    outcomes = [budget.admit(1, seq, SIZE, 0.0) for seq in range(50)]
    assert outcomes == [RtxOutcome.SENT] * 50
    assert budget.stats.sent == 50 and budget.stats.refused_budget == 0


def test_a_burst_is_bounded_then_refills_at_a_share_of_the_estimate() -> None:
    budget = RtxBudget(share=0.2, burst_s=0.25, min_burst_bytes=2_600)
    budget.set_basis(200_000, 0.0)  # 20 % of 200 kbit/s: 5,000 bytes/s; burst 2,600
    first = [budget.admit(1, seq, SIZE, 0.0) for seq in range(43)]  # aiortc's 43-packet NACK
    assert first.count(RtxOutcome.SENT) == 2
    assert budget.stats.refused_budget == 41
    # One second later 5,000 bytes more, but the bucket holds 2,600 at most.
    later = [budget.admit(1, seq, SIZE, 1.0) for seq in range(100, 110)]
    assert later.count(RtxOutcome.SENT) == 2
    # Over ten seconds what is resent stays within the share (+ the burst).
    sent_bytes = 0
    for step in range(1, 101):
        now = 1.0 + step * 0.1
        sent_bytes += SIZE * sum(budget.admit(1, 1000 + step * 10 + i, SIZE, now)
                                 is RtxOutcome.SENT for i in range(10))
    assert 40_000 <= sent_bytes <= 50_000 + 2_600


def test_a_large_estimate_allows_a_larger_burst() -> None:
    budget = RtxBudget(share=0.2, burst_s=0.25)
    budget.set_basis(4_000_000, 0.0)  # 100,000 bytes/s, burst 25,000
    sent = [budget.admit(1, seq, SIZE, 0.0) for seq in range(43)]
    assert sent.count(RtxOutcome.SENT) == 25


def test_a_falling_estimate_cuts_what_is_held() -> None:
    budget = RtxBudget(share=0.2, burst_s=0.25, min_burst_bytes=1_000)
    budget.set_basis(4_000_000, 0.0)
    budget.set_basis(100_000, 0.0)  # burst now max(1,000, 625)
    sent = [budget.admit(1, seq, SIZE, 0.0) for seq in range(10)]
    assert sent.count(RtxOutcome.SENT) == 1


def test_a_packet_is_resent_at_most_once_per_round_trip() -> None:
    budget = RtxBudget(repeat_min_s=0.1, repeat_max_s=0.5)
    assert budget.admit(7, 1234, SIZE, 0.0, rtt_s=0.3) is RtxOutcome.SENT
    assert budget.admit(7, 1234, SIZE, 0.2, rtt_s=0.3) is RtxOutcome.REPEAT
    assert budget.admit(8, 1234, SIZE, 0.2, rtt_s=0.3) is RtxOutcome.SENT  # another SSRC
    assert budget.admit(7, 1234 + 0x10000, SIZE, 0.31, rtt_s=0.3) is RtxOutcome.SENT
    # Without an RTT: the default; a huge RTT is capped, a tiny one floored.
    assert budget.repeat_interval(None) == 0.2
    assert budget.repeat_interval(3.0) == 0.5 and budget.repeat_interval(0.001) == 0.1
    assert budget.stats.refused_repeat == 1


def test_the_repeat_memory_is_bounded() -> None:
    budget = RtxBudget(max_keys=100)
    for seq in range(1_000):
        budget.admit(1, seq, SIZE, 0.0)
    assert len(budget._resent) == 100


def test_a_consumer_answers_a_long_nack_within_its_transport_budget() -> None:
    producer = make_producer()
    consumer, down, _ = consumer_for(producer)
    budget = consumer.rtx_budget = RtxBudget(min_burst_bytes=100)
    budget.set_basis(40_000, 0.0)  # 1,000 bytes/s: one small packet a 1/40 s
    for i in range(40):
        producer.receive_rtp(packet(100 + i, 3000 * i, VP8_KEY if i == 0 else VP8_DELTA),
                             0.01 * i)
    seqs = [seq for _, seq, _, _ in headers(down.rtp)]
    forwarded = len(down.rtp)
    consumer.on_nack(seqs, now=0.5)
    resent = len(down.rtp) - forwarded
    assert 1 <= resent <= 4, resent
    assert consumer.retransmissions_sent == resent
    assert consumer.retransmissions_refused == 40 - resent
    # The same NACK again at once: what was resent is a repeat, the rest waits for budget.
    consumer.on_nack(seqs[:resent], now=0.55)
    assert len(down.rtp) - forwarded == resent
    assert budget.stats.refused_repeat == resent


def test_a_refused_retransmission_takes_no_transport_wide_number() -> None:
    """Numbering a packet and not sending it would read as a loss to the estimator."""
    producer = make_producer()
    consumer, down, _ = consumer_for(producer)
    producer.receive_rtp(packet(1, 0, VP8_KEY), 0.0)
    budget = consumer.rtx_budget = RtxBudget()
    budget.admit(consumer.ssrc, headers(down.rtp)[0][1], SIZE, 0.0)  # resent just now
    consumer.on_nack([headers(down.rtp)[0][1]], now=0.01)
    assert len(down.rtp) == 1 and consumer.retransmissions_refused == 1


def test_a_subscriber_s_keyframe_requests_reach_the_publisher_once_a_second() -> None:
    producer = make_producer()
    consumer, _, _ = consumer_for(producer)
    for i in range(10):  # a PLI every 0.25 s for 2.5 s
        consumer.on_keyframe_request(0.25 * i)
    # The producer alone would pass one every keyframe_interval_s (0.5 s): 5.
    assert producer.keyframe_requests_sent == 3  # at 0, 1.0 and 2.0 s
    assert consumer.keyframe_requests_received == 10
    assert consumer.keyframe_requests_suppressed == 7
    assert consumer.stats().keyframe_requests_suppressed == 7
