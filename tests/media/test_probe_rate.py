"""A probe cluster's result (media/probe_rate.py): libwebrtc's rules, and the later half's
receive rate, which a shaper's burst at line rate does not lift."""

from __future__ import annotations

import pytest

from media.probe_rate import ProbeRates, later_bps

SIZE = 275  # a padding packet (media/fanout.PADDING_MAX + 20)


def cluster(rate_bps: float, arrivals: list[float], cluster_id: int = 1) -> float | None:
    """A cluster sent paced at `rate_bps` whose packets arrived at `arrivals` (ms): its
    result once all are reported."""
    rates = ProbeRates()
    rates.sent(cluster_id, len(arrivals))
    gap = SIZE * 8000 / rate_bps
    result = None
    for i, arrival in enumerate(arrivals):
        result = rates.add(cluster_id, 1000 + i * gap, arrival, SIZE) or result
    return result


def test_a_cluster_whose_start_passes_in_a_shapers_burst_gives_the_sustained_rate() -> None:
    """12 kB sent at 600 kbit/s into a 300 kbit/s token bucket holding 4 kB: the first
    4 kB arrive at line rate (0.05 ms apart), the rest at 300 kbit/s. Over the whole
    cluster the receive rate said ~1.4x the link (and a shorter cluster, all in the burst,
    the send rate): the later half says the link."""
    packets = 44
    burst = 4000 // SIZE
    arrivals = [1020 + i * 0.05 for i in range(burst)]
    link_gap = SIZE * 8000 / 300_000
    arrivals += [arrivals[-1] + (i + 1) * link_gap for i in range(packets - burst)]
    result = cluster(600_000, arrivals)
    assert result is not None
    assert 0.9 * 300_000 <= result <= 1.05 * 300_000


def test_on_a_link_without_a_burst_the_result_is_min_of_send_and_receive_rates() -> None:
    """Arrivals as sent (an open link) or evenly at a bottleneck's rate: the later half's
    rate is the whole cluster's, and the result is libwebrtc's."""
    gap = SIZE * 8000 / 600_000
    open_link = cluster(600_000, [1020 + i * gap for i in range(44)])
    send_bps = 43 * SIZE * 8000 / (43 * gap)
    assert open_link == pytest.approx(send_bps)
    slow = SIZE * 8000 / 400_000
    bottleneck = cluster(600_000, [1020 + i * slow for i in range(44)])
    assert bottleneck == pytest.approx(0.95 * 400_000)  # saturated: 0.95 x received


def test_the_later_half_starts_at_the_packet_that_completes_the_first() -> None:
    # 4 packets of 100 bytes: the second completes the first half; 200 bytes in 20 ms after.
    assert later_bps([(0.0, 100), (10.0, 100), (20.0, 100), (30.0, 100)], 400) \
        == pytest.approx(200 * 8000 / 20)
    assert later_bps([(0.0, 100), (10.0, 300)], 400) is None  # nothing after the half
    assert later_bps([(5.0, 100), (5.0, 100), (5.0, 100)], 300) is None  # no interval


def test_a_result_waits_for_80_percent_of_the_packets_sent() -> None:
    rates = ProbeRates()
    rates.sent(3, 20)
    results = [rates.add(3, i, 20 + i, 1200) for i in range(17)]
    assert results[14] is None and results[15] is not None  # the 16th is 80 %
