"""Transport-wide feedback over a real DTLS/SRTP send transport: a browser-like simulcast
publisher (testkit/simulcast_publisher.py) numbering its packets gets RTPFB FMT 15 reports of
every one of them every ~50 ms; without the extension in its offer it gets none. Arrival times
are the kernel's."""

from __future__ import annotations

import asyncio
import itertools
import random
import struct
import time

import pytest
from prometheus_client import CollectorRegistry

from media import SFU
from media.transport import WebRtcTransport
from server.conference.metrics import MediaMetrics
from server.conference.room_stats import RoomStats
from testkit.aiortc_clients import wait_for
from testkit.encoded_cache import cached
from testkit.simulcast_publisher import SimulcastMedia, SimulcastPublisher, encode_simulcast

from .conftest import make_config
from .test_twcc import parse
from .transport_pair import connected_pair


@pytest.fixture(scope="module")
def layers() -> SimulcastMedia:
    return cached(encode_simulcast, seconds=1.0)


def feedback_of(publisher: SimulcastPublisher) -> list[tuple[float, bytes]]:
    """(time, RTPFB FMT 15 packet) in what the publisher received (compound packets split)."""
    out = []
    for at, data in publisher.transport.raw_rtcp:
        pos = 0
        while pos + 4 <= len(data):
            length = (struct.unpack_from("!H", data, pos + 2)[0] + 1) * 4
            if data[pos + 1] == 205 and data[pos] & 0x1F == 15:
                out.append((at, data[pos:pos + length]))
            pos += length
    return out


async def run_publisher(sfu: SFU, layers: SimulcastMedia, transport_cc: bool,
                        seconds: float) -> SimulcastPublisher:
    router = sfu.router("m")
    publisher = SimulcastPublisher(router.add_peer("alice"), layers, make_config(),
                                   transport_cc=transport_cc)
    await publisher.publish()
    assert ("transport-cc" in publisher.result.sdp) is transport_cc  # type: ignore[union-attr]
    task = asyncio.ensure_future(publisher.run(30))
    try:
        await wait_for(lambda: publisher.connected, 5)
        await asyncio.sleep(seconds)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    await asyncio.sleep(0.15)  # the last report
    await publisher.close()
    return publisher


async def test_a_publisher_offering_transport_cc_gets_every_packet_reported(
        sfu: SFU, layers: SimulcastMedia) -> None:
    publisher = await run_publisher(sfu, layers, True, 1.5)
    packets = feedback_of(publisher)
    reports = [parse(p) for _, p in packets]
    ssrcs = {layer.ssrc for layer in publisher.layers}
    assert reports and all(r.media_ssrc in ssrcs for r in reports)
    # Every ~50 ms while packets flow (MediaConfig.twcc_interval_s).
    times = [at for at, _ in packets]
    gaps = sorted(b - a for a, b in itertools.pairwise(times))
    assert 0.03 < gaps[len(gaps) // 2] < 0.09, gaps
    assert [r.fb_count for r in reports] == [i & 0xFF for i in range(len(reports))]
    received: dict[int, int] = {}
    for r in reports:
        for seq, at in r.arrivals.items():
            assert at is not None, f"{seq} reported lost on loopback"
            received.setdefault(seq, at)
    sent = publisher.twcc_sent
    # Every packet sent (but the last interval's) is reported once as received...
    assert len(received) >= len(sent) - 40 and set(received) <= set(sent)
    # ...with arrival times that follow the send times (loopback: within a few ms).
    seqs = sorted(received, key=lambda s: sent[s])
    base_sent, base_at = sent[seqs[0]], received[seqs[0]]
    skew = [abs((sent[s] - base_sent) - (received[s] - base_at) / 4000) for s in seqs]
    assert max(skew) < 0.05, max(skew)


async def test_without_transport_cc_in_the_offer_no_transport_feedback_is_sent(
        sfu: SFU, layers: SimulcastMedia) -> None:
    publisher = await run_publisher(sfu, layers, False, 0.6)
    assert feedback_of(publisher) == []
    assert any(data for _, data in publisher.transport.raw_rtcp)  # RRs did come


async def test_transport_cc_off_in_the_config_answers_without_it(
        layers: SimulcastMedia) -> None:
    sfu = SFU(make_config(transport_cc=False))
    try:
        router = sfu.router("m")
        publisher = SimulcastPublisher(router.add_peer("alice"), layers, make_config(),
                                       transport_cc=True)
        result = await publisher.publish()
        assert "transport-cc" not in result.sdp and "transport-wide" not in result.sdp
        await publisher.close()
    finally:
        await sfu.close()


async def test_kernel_receive_times_show_the_spacing_a_stalled_loop_reads_at_once() -> None:
    """The feedback's arrival times are the kernel's (SIOCGSTAMP on the nominated socket):
    packets sent 15 ms apart while the receiving loop is busy are read back to back, and
    still reported 15 ms apart; the loop's own clock (`now`) sees them together."""
    server, _, client, crec = await connected_pair(make_config())
    try:
        client.kernel_stamps = True
        seen: list[tuple[float, float]] = []

        def on_rtp(transport: WebRtcTransport, data: bytes, now: float) -> None:
            seen.append((transport.kernel_arrival, now))

        crec.on_rtp = on_rtp  # type: ignore[method-assign]
        def packet(seq: int) -> bytes:  # (SRTP refuses a replayed sequence number)
            return struct.pack("!BBHII", 0x80, 96, seq, 0, 1234) + bytes(100)

        for seq in range(3):  # the first read turns the socket's timestamps on
            server.send_rtp(packet(seq))
            await asyncio.sleep(0.05)
        seen.clear()
        sent = []  # (before, after) the send: loopback delivers within the sendto call
        for seq in range(3, 8):  # the loop is held: nothing is read until all are sent
            before = time.time()
            server.send_rtp(packet(seq))
            sent.append((before, time.time()))
            time.sleep(0.015)
        await wait_for(lambda: len(seen) == 5, 5)
        for (kernel, _), (before, after) in zip(seen, sent, strict=True):
            assert before - 0.001 <= kernel <= after + 0.001, (seen, sent)
        assert all(b[0] - a[0] > 0.014 for a, b in itertools.pairwise(seen)), seen
        assert seen[-1][1] - seen[0][1] < 0.5 * (seen[-1][0] - seen[0][0]), seen  # read at once
    finally:
        await client.close()
        await server.close()


async def test_a_publisher_numbering_wildly_is_counted_and_its_reports_stay_bounded(
        sfu: SFU, layers: SimulcastMedia) -> None:
    """Jumps by half the sequence space, stale numbers, repeats: nothing raises, the media
    still flows, every report stays small, and what was left out is counted (and reaches
    /metrics through the room's counters, server/conference/room_stats.py)."""
    router = sfu.router("m")
    peer = router.add_peer("alice")
    publisher = SimulcastPublisher(peer, layers, make_config(), transport_cc=True)
    await publisher.publish()
    rng = random.Random(3)

    async def wild() -> None:
        while True:
            publisher.twcc_seq = rng.choice((rng.randrange(0x10000),
                                             (publisher.twcc_seq + 0x7FFF) & 0xFFFF,
                                             (publisher.twcc_seq - 3000) & 0xFFFF))
            await asyncio.sleep(0.005)

    task = asyncio.ensure_future(publisher.run(30))
    chaos = asyncio.ensure_future(wild())
    try:
        await wait_for(lambda: publisher.connected, 5)
        await wait_for(lambda: peer.uplink_stats().too_old > 20, 10)
    finally:
        for t in (task, chaos):
            t.cancel()
        await asyncio.gather(task, chaos, return_exceptions=True)
    stats = peer.uplink_stats()
    assert stats.transport_cc and stats.packets > 10 and stats.feedback_packets > 0
    producer = router.get_producer(publisher.producer_id)
    assert producer.packets_received > 20  # the media was not disturbed
    packets = feedback_of(publisher)
    assert packets and all(len(p) <= 1100 for _, p in packets)
    for _, p in packets:
        parse(p)  # well formed
    registry = CollectorRegistry()
    metrics = MediaMetrics.create(registry)
    RoomStats(1).count(router, metrics)
    assert registry.get_sample_value("hopso_media_uplink_feedback_total",
                                     {"event": "too_old"}) == stats.too_old
    await publisher.close()
