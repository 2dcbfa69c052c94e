from __future__ import annotations

import struct

from aiortc.rtp import RtcpReceiverInfo

from media.consumer import Consumer
from media.producer import Producer
from media.types import CloseReason

from .fakes import VP8_CONT, VP8_DELTA, VP8_KEY, FakeTransport, headers, make_producer, packet


def consumer_for(producer: Producer, rtx: bool = True) -> tuple[Consumer, FakeTransport, list]:
    down = FakeTransport()
    closed: list[CloseReason] = []
    consumer = Consumer(peer_id="sub", producer=producer, transport=down,  # type: ignore[arg-type]
                        mid="3", pt=100, rtx_pt=101, ssrc=5555, rtx_ssrc=6666,
                        stream_id="pub-av", on_close=lambda c, r: closed.append(r))
    consumer.apply_answer(100, 101 if rtx else None, nack=True)
    consumer.set_active(True)
    producer.add_consumer(consumer)
    return consumer, down, closed


def test_inactive_until_answered_and_connected() -> None:
    producer = make_producer()
    down = FakeTransport()
    consumer = Consumer(peer_id="sub", producer=producer, transport=down,  # type: ignore[arg-type]
                        mid="0", pt=100, rtx_pt=None, ssrc=1, rtx_ssrc=2, stream_id="s",
                        on_close=lambda c, r: None)
    producer.add_consumer(consumer)
    consumer.set_active(True)  # not answered yet: stays inactive
    producer.receive_rtp(packet(1, 0, VP8_KEY), 0.0)
    assert not consumer.active and down.rtp == []


def test_new_video_consumer_holds_until_keyframe_and_asks_for_one() -> None:
    up = FakeTransport()
    producer = make_producer(transport=up)
    producer.receive_rtp(packet(1, 0, VP8_KEY), 0.0)
    consumer, down, _ = consumer_for(producer)
    producer.receive_rtp(packet(2, 3000, VP8_DELTA), 0.1)
    producer.receive_rtp(packet(3, 3000, VP8_CONT), 0.1)
    assert down.rtp == [] and producer.keyframe_requests_sent == 1
    producer.receive_rtp(packet(4, 6000, VP8_KEY), 0.2)
    producer.receive_rtp(packet(5, 6000, VP8_CONT), 0.2)
    assert len(down.rtp) == 2 and consumer.packets_dropped == 2


def test_nack_answered_from_history_as_rtx() -> None:
    producer = make_producer()
    consumer, down, _ = consumer_for(producer)
    for i in range(5):
        producer.receive_rtp(packet(100 + i, 1000 + 3000 * i, VP8_KEY if i == 0 else VP8_DELTA),
                             0.01 * i)
    sent = headers(down.rtp)
    lost_seq, lost_ts = sent[2][1], sent[2][2]
    consumer.on_nack([lost_seq], now=0.2)
    rtx = down.rtp[-1]
    pt, _, ts, ssrc = headers([rtx])[0]
    assert (pt, ssrc, ts) == (101, 6666, lost_ts)
    assert struct.unpack_from("!H", rtx, 20)[0] == lost_seq  # OSN after the 8-byte ext
    assert rtx[22:] == VP8_DELTA
    consumer.on_nack([lost_seq], now=5.0)  # out of the 1 s history
    assert consumer.retransmissions_sent == 1


def test_nack_without_rtx_resends_the_original() -> None:
    producer = make_producer()
    consumer, down, _ = consumer_for(producer, rtx=False)
    producer.receive_rtp(packet(1, 0, VP8_KEY), 0.0)
    producer.receive_rtp(packet(2, 0, VP8_CONT), 0.0)
    consumer.on_nack([headers(down.rtp)[1][1]], now=0.1)
    assert down.rtp[-1] == down.rtp[1]


def test_dropped_when_transport_refuses() -> None:
    producer = make_producer()
    consumer, down, _ = consumer_for(producer)
    down.accept = False
    producer.receive_rtp(packet(1, 0, VP8_KEY), 0.0)
    assert consumer.packets_sent == 0 and consumer.packets_dropped == 1


def test_sender_report_uses_publisher_clock_and_rtt_from_rr() -> None:
    producer = make_producer()
    consumer, down, _ = consumer_for(producer)
    producer.receive_rtp(packet(1, 90000, VP8_KEY), 10.0)
    first_ts = headers(down.rtp)[0][2]
    sr_in = type("SR", (), {})()
    sr_in.sender_info = type("Info", (), {"ntp_timestamp": 5 << 32, "rtp_timestamp": 90000})()
    producer.on_sender_report(sr_in, now=10.0)  # type: ignore[arg-type]
    sr = consumer.sender_report(now=11.0)
    assert sr is not None and sr.ssrc == 5555
    assert sr.sender_info.ntp_timestamp == 6 << 32  # publisher NTP + 1 s
    assert (sr.sender_info.rtp_timestamp - first_ts) & 0xFFFFFFFF == 90000
    assert sr.sender_info.packet_count == 1
    lsr = (sr.sender_info.ntp_timestamp >> 16) & 0xFFFFFFFF
    consumer.on_receiver_report(RtcpReceiverInfo(
        ssrc=5555, fraction_lost=64, packets_lost=3, highest_sequence=1, jitter=900,
        lsr=lsr, dlsr=int(0.01 * 65536)), now=11.05)
    assert consumer.rtt_ms is not None and 39 < consumer.rtt_ms < 41
    assert consumer.fraction_lost == 0.25 and consumer.jitter_ms == 10.0


def test_close_detaches_once() -> None:
    producer = make_producer()
    consumer, _, closed = consumer_for(producer)
    consumer.close(CloseReason.REQUESTED)
    consumer.close(CloseReason.REQUESTED)
    assert closed == [CloseReason.REQUESTED] and producer.consumers == []
