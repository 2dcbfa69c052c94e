from __future__ import annotations

import itertools
from typing import Any

from aiortc.rtp import RtcpPacket, RtcpPsfbPacket, RtcpRrPacket, RtcpRtpfbPacket, unpack_remb_fci

from media import MediaConfig
from media.consumer import Consumer
from media.producer import Producer
from media.types import CloseReason, Kind

from .fakes import (
    VP8_CONT,
    VP8_DELTA,
    VP8_KEY,
    FakeTransport,
    headers,
    make_producer,
    packet,
    rtx_packet,
)


def attach(producer: Producer, transport: FakeTransport | None = None,
           rtx: bool = True) -> tuple[Consumer, FakeTransport]:
    transport = transport or FakeTransport()
    consumer = Consumer(peer_id="sub", producer=producer, transport=transport,  # type: ignore[arg-type]
                        mid="0", pt=100, rtx_pt=101, ssrc=5555, rtx_ssrc=6666,
                        stream_id="pub-av", on_close=lambda c, r: None)
    consumer.apply_answer(100, 101 if rtx else None, nack=True)
    consumer.set_active(True)
    producer.add_consumer(consumer)
    return consumer, transport


def test_rtx_is_unwrapped_into_its_slot_never_forwarded_as_media() -> None:
    up = FakeTransport()
    producer = make_producer(transport=up)
    _, down = attach(producer)
    producer.receive_rtp(packet(10, 0, VP8_KEY), 0.0)
    producer.receive_rtp(packet(12, 3000), 0.01)  # 11 lost
    nacks = [p for p in up.rtcp_packets() if isinstance(p, RtcpRtpfbPacket)]
    assert nacks and nacks[0].lost == [11] and nacks[0].media_ssrc == 1111
    producer.receive_rtx(rtx_packet(osn=11, seq=500, payload=VP8_CONT), 0.02)
    producer.receive_rtx(rtx_packet(osn=11, seq=501, payload=VP8_CONT), 0.03)  # duplicate
    probe = rtx_packet(osn=0, seq=502)
    probe.payload = b""  # padding-only bandwidth probe
    producer.receive_rtx(probe, 0.03)
    sent = headers(down.rtp)
    assert [pt for pt, *_ in sent] == [100, 100, 100]  # media PT only, no RTX PT
    assert {ssrc for *_, ssrc in sent} == {5555}
    seqs = [seq for _, seq, _, _ in sent]
    assert (seqs[1] - seqs[0]) & 0xFFFF == 2 and (seqs[2] - seqs[0]) & 0xFFFF == 1
    assert producer.packets_recovered == 1 and producer.rtx_received == 2
    assert producer.packets_lost == 0


def test_nack_retries_then_gives_up() -> None:
    up = FakeTransport()
    producer = make_producer(transport=up)
    producer.receive_rtp(packet(1, 0, VP8_KEY), 0.0)
    producer.receive_rtp(packet(3), 0.0)
    for i in range(20):
        producer.receive_rtp(packet(4 + i), 0.05 * (i + 1))
    nacks = [p.lost for p in up.rtcp_packets() if isinstance(p, RtcpRtpfbPacket)]
    assert nacks == [[2], [2], [2]]
    rr = up.rtcp_packets()[0]
    assert isinstance(rr, RtcpRrPacket)  # feedback rides in a compound packet


def test_audio_reordering_is_forwarded_and_not_nacked() -> None:
    up = FakeTransport()
    producer = make_producer(Kind.AUDIO, transport=up, pt=111, rtx_pt=None)
    _, down = attach(producer)
    for seq in (1, 3, 2, 2):
        producer.receive_rtp(packet(seq, seq * 960, b"opus", pt=111), 0.0)
    assert len(down.rtp) == 3  # the repeat of 2 is dropped, the late 2 is not
    assert not [p for p in up.rtcp_packets() if isinstance(p, RtcpRtpfbPacket)]


def test_keyframe_requests_are_rate_limited() -> None:
    up = FakeTransport()
    producer = make_producer(transport=up, config=MediaConfig(
        ice_addresses=("127.0.0.1",), keyframe_interval_s=0.5))
    producer.receive_rtp(packet(1, 0, VP8_KEY), 0.0)
    for i in range(50):
        producer.request_keyframe(1.0 + i * 0.02)  # 50 requests over 1 s
    plis = [p for p in up.rtcp_packets() if isinstance(p, RtcpPsfbPacket) and p.fmt == 1]
    assert len(plis) == 2 and plis[0].media_ssrc == 1111
    assert producer.keyframe_requests_sent == 2
    assert producer.keyframe_requests_suppressed == 48


def test_pause_stops_forwarding_and_resume_waits_for_keyframe() -> None:
    up = FakeTransport()
    producer = make_producer(transport=up)
    _, down = attach(producer)
    producer.receive_rtp(packet(1, 0, VP8_KEY), 0.0)
    producer.receive_rtp(packet(2, 3000), 0.0)
    assert producer.pause() and not producer.pause()
    producer.receive_rtp(packet(3, 6000), 0.1)
    assert len(down.rtp) == 2
    assert producer.resume(1.0)
    producer.receive_rtp(packet(4, 9000), 1.0)  # delta: held back
    producer.receive_rtp(packet(5, 12000, VP8_KEY), 1.1)
    producer.receive_rtp(packet(6, 12000, VP8_CONT), 1.1)
    seqs = [seq for _, seq, _, _ in headers(down.rtp)]
    assert len(seqs) == 4
    assert [(b - a) & 0xFFFF for a, b in itertools.pairwise(seqs)] == [1, 1, 1]  # continuous
    assert any(isinstance(p, RtcpPsfbPacket) and p.fmt == 1 for p in up.rtcp_packets())


def test_new_publisher_ssrc_resyncs_consumers_at_keyframe() -> None:
    producer = make_producer()
    _, down = attach(producer)
    producer.receive_rtp(packet(100, 1000, VP8_KEY), 0.0)
    producer.receive_rtp(packet(101, 4000), 0.033)
    producer.receive_rtp(packet(7, 555, VP8_DELTA, ssrc=9999), 0.5)  # restarted encoder
    producer.receive_rtp(packet(8, 3555, VP8_KEY, ssrc=9999), 0.533)
    assert producer.epoch == 1 and producer.ssrc == 9999
    sent = headers(down.rtp)
    assert len(sent) == 3
    assert (sent[2][1] - sent[1][1]) & 0xFFFF == 1
    assert 0 < (sent[2][2] - sent[1][2]) & 0xFFFFFFFF < 90000


def test_remb_is_min_of_fresh_consumers_capped() -> None:
    up = FakeTransport()
    producer = make_producer(transport=up, max_bitrate_bps=800_000)
    a, _ = attach(producer)
    b, _ = attach(producer)
    producer.receive_rtp(packet(1, 0, VP8_KEY), 0.0)
    a.on_remb(300_000, now=10.0)
    b.on_remb(2_000_000, now=10.0)
    packet_bytes = producer.remb(now=11.0)
    assert packet_bytes is not None
    [remb] = RtcpPacket.parse(packet_bytes)
    assert isinstance(remb, RtcpPsfbPacket)
    bitrate, ssrcs = unpack_remb_fci(remb.fci)
    assert abs(bitrate - 300_000) < 1000 and ssrcs == [1111]
    producer.remb(now=20.0)  # a's estimate is stale now
    assert producer.remb_sent == 800_000


def test_receiver_report_counts_loss() -> None:
    producer = make_producer(Kind.AUDIO, pt=111, rtx_pt=None)
    for seq in range(100):
        if seq % 10 != 5:
            producer.receive_rtp(packet(seq, seq * 960, b"o", pt=111), seq * 0.02)
    report = producer.receiver_report(now=2.0)
    assert report is not None
    assert report.packets_lost == 10 and 20 <= report.fraction_lost <= 30
    assert report.highest_sequence == 99 and report.ssrc == 1111


def test_audio_levels_reach_the_callback() -> None:
    levels: list[int] = []
    producer = make_producer(Kind.AUDIO, pt=111, rtx_pt=None, audio_level_ext=1,
                             on_audio_level=lambda p, level, now: levels.append(level))
    ext = bytes([0x10, 0x80 | 25, 0, 0])  # id 1, one byte: V=1, level 25
    producer.receive_rtp(packet(1, 0, b"o", pt=111, ext=ext, ext_profile=0xBEDE), 0.0)
    assert levels == [25]


def test_close_cascades_to_consumers_once() -> None:
    reasons: list[Any] = []
    producer = make_producer(on_close=lambda p, r: reasons.append(r))
    closed: list[CloseReason] = []
    consumer = Consumer(peer_id="sub", producer=producer, transport=FakeTransport(),  # type: ignore[arg-type]
                        mid="0", pt=100, rtx_pt=None, ssrc=1, rtx_ssrc=2, stream_id="s",
                        on_close=lambda c, r: closed.append(r))
    producer.add_consumer(consumer)
    producer.close(CloseReason.REQUESTED)
    producer.close(CloseReason.REQUESTED)
    assert reasons == [CloseReason.REQUESTED]
    assert closed == [CloseReason.PRODUCER_CLOSED] and consumer.closed
    assert producer.consumers == []
