"""Transport-wide feedback to publishers (media/twcc.py): the encoder against known vectors
and an independent parser written from draft-holmer-rmcat-transport-wide-cc-extensions-01
section 3.1, and the recorder's bounds against a hostile publisher."""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass

import pytest

from media import twcc
from media.twcc import MAX_PACKETS, MAX_SPAN, WINDOW, TwccRecorder, build_feedback


@dataclass
class Feedback:
    sender_ssrc: int
    media_ssrc: int
    base_seq: int
    reference_time: int  # 64 ms units, signed 24 bits
    fb_count: int
    arrivals: dict[int, int | None]  # 16-bit seq -> arrival in 250 us ticks, None = lost


def parse(data: bytes) -> Feedback:
    """One RTPFB FMT 15 packet, read straight from the draft's figures."""
    assert len(data) >= 20 and len(data) % 4 == 0
    b0, pt, length = struct.unpack_from("!BBH", data)
    assert b0 >> 6 == 2 and b0 & 0x1F == 15 and pt == 205
    assert (length + 1) * 4 == len(data)
    end = len(data) - (data[-1] if b0 & 0x20 else 0)
    sender, media, base, count, ref_and_count = struct.unpack_from("!IIHHI", data, 4)
    ref = ref_and_count >> 8
    if ref & 0x800000:
        ref -= 1 << 24
    pos = 20
    symbols: list[int] = []
    while len(symbols) < count:
        (chunk,) = struct.unpack_from("!H", data, pos)
        pos += 2
        if not chunk & 0x8000:  # run length: T=0, S (2 bits), length (13 bits)
            symbols += [(chunk >> 13) & 3] * (chunk & 0x1FFF)
        elif not chunk & 0x4000:  # status vector, 14 one-bit symbols
            symbols += [(chunk >> (13 - i)) & 1 for i in range(14)]
        else:  # status vector, 7 two-bit symbols
            symbols += [(chunk >> (2 * (6 - i))) & 3 for i in range(7)]
    symbols = symbols[:count]
    assert 3 not in symbols
    time = ref * 256  # in 250 us ticks
    arrivals: dict[int, int | None] = {}
    for i, symbol in enumerate(symbols):
        seq = (base + i) & 0xFFFF
        if symbol == 0:
            arrivals[seq] = None
            continue
        if symbol == 1:
            delta = data[pos]
            pos += 1
        else:
            (delta,) = struct.unpack_from("!h", data, pos)
            pos += 2
        time += delta
        arrivals[seq] = time
    assert pos <= end and not any(data[pos:end]), "bytes left after the deltas"
    return Feedback(sender, media, base, ref, ref_and_count & 0xFF, arrivals)


# pion/rtcp transport_layer_cc_test.go, TestTransportLayerCC_Unmarshal "example4" (a Chrome
# feedback): base 4, 7 packets received 19, 9, 9, 4, 3, 3, 4 ms apart, reference 1074030.
PION_EXAMPLE4 = bytes((
    0xaf, 0xcd, 0x0, 0x7, 0xfa, 0x17, 0xfa, 0x17, 0x19, 0x3d, 0xd8, 0xbb, 0x0, 0x4, 0x0, 0x7,
    0x10, 0x63, 0x6e, 0x1, 0x20, 0x7, 0x4c, 0x24, 0x24, 0x10, 0xc, 0xc, 0x10, 0x0, 0x0, 0x3))
# "example3": a run of 2 large deltas then a run of 4 small ones.
PION_EXAMPLE3 = bytes((
    0xaf, 0xcd, 0x0, 0x7, 0xfa, 0x17, 0xfa, 0x17, 0x19, 0x3d, 0xd8, 0xbb, 0x1, 0x74, 0x0, 0x6,
    0x45, 0xb1, 0x5a, 0x40, 0x40, 0x2, 0x20, 0x04, 0x1f, 0xfe, 0x1f, 0x9a, 0xd0, 0x0, 0xd0,
    0x0))


def test_encoder_writes_pion_and_chromes_vectors_byte_for_byte() -> None:
    ticks = [19000 // 250, 9000 // 250, 36, 16, 12, 12, 16]
    assert build_feedback(0xFA17FA17, 0x193DD8BB, 4, 1074030, 1, [1] * 7, ticks) \
        == PION_EXAMPLE4
    # example3's two run-length chunks are not what libwebrtc writes for 6 mixed symbols
    # (one two-bit vector, as here); the rest is the same bytes.
    ours = build_feedback(0xFA17FA17, 0x193DD8BB, 372, 4567386, 64, [2, 2, 1, 1, 1, 1],
                          [8190, 8090, 208, 0, 208, 0])
    assert ours[20:22] == struct.pack("!H", 0xE954)  # 2-bit symbols 2 2 1 1 1 1 (0)
    assert ours[4:20] == PION_EXAMPLE3[4:20] and ours[22:28] == PION_EXAMPLE3[24:30]
    assert parse(ours).arrivals == parse(PION_EXAMPLE3).arrivals


def test_recorder_reports_pion_example4_from_arrival_times() -> None:
    recorder = TwccRecorder(origin=0.0)
    t = 1074030 * 0.064
    for seq, gap_ms in zip(range(4, 11), (19, 9, 9, 4, 3, 3, 4)):
        t += gap_ms / 1000
        recorder.record(seq, t, 0x193DD8BB)
    (packet,) = recorder.feedback(0xFA17FA17)
    # The same bytes but the feedback packet count (byte 19): ours starts at 0.
    assert packet[:19] == PION_EXAMPLE4[:19] and packet[20:] == PION_EXAMPLE4[20:]
    assert packet[19] == 0


def test_the_independent_parser_reads_the_drafts_examples() -> None:
    fb = parse(PION_EXAMPLE3)
    assert (fb.base_seq, fb.reference_time, fb.fb_count) == (372, 4567386, 64)
    base = 4567386 * 256
    assert list(fb.arrivals.values()) == [base + 8190, base + 16280, base + 16488,
                                          base + 16488, base + 16696, base + 16696]


def run_and_parse(recorder: TwccRecorder) -> list[Feedback]:
    return [parse(p) for p in recorder.feedback(1)]


@pytest.mark.parametrize("seed", range(12))
def test_random_arrivals_with_loss_reordering_and_wrap_decode_back_exactly(seed: int) -> None:
    """Every sequence number since the last report is in it, once, received or not, with its
    arrival time to the 250 us tick (the rounding never accumulates)."""
    rng = random.Random(seed)
    recorder = TwccRecorder(origin=1000.0)
    seq = rng.randrange(0x10000)  # wraps within the run for most seeds
    t = 1000.0 + rng.random() * 100
    truth: dict[int, int | None] = {}
    for report in range(20):
        sent = []
        for _ in range(rng.randrange(1, 80)):
            sent.append(seq & 0xFFFF)
            seq += 1
        received = [s for s in sent if rng.random() > 0.1 or (s == sent[0] and report == 0)]
        if len(received) > 3 and rng.random() < 0.5:  # some reordering
            i = rng.randrange(len(received) - 2)
            received[i], received[i + 2] = received[i + 2], received[i]
        for s in sent:
            truth[s] = None
        for s in received:
            t += rng.choice((0.0, 0.0004, 0.002, 0.03, 0.09, 1.5))
            recorder.record(s, t, 7)
            truth[s] = round((t - 1000.0) * 4000)
        reported: dict[int, int | None] = {}
        for fb in run_and_parse(recorder):
            assert fb.media_ssrc == 7
            for s, at in fb.arrivals.items():
                reported.setdefault(s, at)
        # What a report covers ends at the highest received; lost ones at the tail come later.
        last = max(received, key=lambda s: (s - sent[0]) & 0xFFFF) if received else None
        for s in sent:
            if last is None or (s - sent[0]) & 0xFFFF > (last - sent[0]) & 0xFFFF:
                continue
            assert s in reported, (report, s)
            got, want = reported[s], truth[s]
            if want is None:
                assert got is None
            else:
                assert got is not None and abs(got - want) <= 1


def test_a_late_packet_is_reported_again_with_its_neighbours_true_state() -> None:
    recorder = TwccRecorder(origin=0.0)
    for seq in (100, 101, 103):
        recorder.record(seq, seq / 1000, 1)
    first = run_and_parse(recorder)[0].arrivals
    assert first[102] is None and first[103] is not None
    recorder.record(102, 0.2, 1)  # 102 arrives late
    again = run_and_parse(recorder)[0].arrivals
    assert list(again) == [102, 103] and again[102] == 800 and again[103] == 412


def test_feedback_packets_count_up_and_nothing_is_sent_without_packets() -> None:
    recorder = TwccRecorder(origin=0.0)
    assert recorder.feedback(1) == [] and not recorder.pending
    counts = []
    for i in range(300):
        recorder.record(i, i / 100, 1)
        if i % 10 == 9:
            counts += [parse(p).fb_count for p in recorder.feedback(1)]
    assert counts == list(range(30))
    assert recorder.feedback(1) == []


def test_huge_jumps_and_garbage_stay_bounded() -> None:
    """A hostile publisher: random sequence numbers, jumps by half the space, wrap-around,
    stale ones. The state never grows, a report never exceeds its caps, nothing raises."""
    rng = random.Random(5)
    recorder = TwccRecorder(origin=0.0)
    t = 0.0
    for _ in range(20):
        for _ in range(500):
            t += rng.choice((0.0, 0.00001, 9.0, 0.5))
            recorder.record(rng.choice((rng.randrange(0x10000), 0x7FFF, 0x8000, 0, 0xFFFF)),
                            t, rng.getrandbits(32))
        packets = recorder.feedback(1)
        assert len(packets) <= MAX_PACKETS
        assert all(len(p) <= 1100 for p in packets)
        total = sum(len(parse(p).arrivals) for p in packets)
        assert total <= MAX_SPAN
    assert len(recorder._seqs) == WINDOW and len(recorder._times) == WINDOW
    assert recorder.too_old > 0 and recorder.skipped > 0


def test_a_report_with_many_packets_is_split_and_a_gap_of_seconds_starts_a_new_packet() -> None:
    recorder = TwccRecorder(origin=0.0)
    for seq in range(600):  # 600 received in one interval: 3 packets of <= 250 deltas
        recorder.record(seq, seq * 0.001, 1)
    recorder.record(600, 20.0, 1)  # 19.4 s later: beyond a 16-bit delta (8.19 s)
    feedback = run_and_parse(recorder)
    assert [len(f.arrivals) for f in feedback] == [250, 250, 100, 1]
    assert feedback[-1].arrivals[600] == 80000
    assert [f.base_seq for f in feedback] == [0x10000 & 0xFFFF, 250, 500, 600]


def test_a_packet_far_behind_the_window_is_dropped_and_counted() -> None:
    recorder = TwccRecorder(origin=0.0)
    recorder.record(5000, 1.0, 1)
    recorder.feedback(1)
    recorder.record(5000 - WINDOW - 1, 1.1, 1)
    assert recorder.too_old == 1 and recorder.feedback(1) == []


def test_encoder_chunks_match_libwebrtcs_choice() -> None:
    # 7 mixed with a large delta: one two-bit vector; 14 without large: one one-bit vector;
    # a long run then something else: a run length chunk and a vector.
    assert twcc.encode_chunks([1, 0, 2, 1, 1, 1, 1]) == struct.pack("!H", 0xC000 | 0x1000
                                                                   | 0x0200 | 0x55)
    assert twcc.encode_chunks([1, 0] * 7) == struct.pack("!H", 0x8000 | 0x2AAA)
    assert twcc.encode_chunks([0] * 300 + [1]) == struct.pack("!HH", 300, 0x2001)


# --- parse_feedback: a subscriber's feedback read by the SFU ---------------------------------

# A Chrome feedback as Wireshark dissects it (olivermichel/webrtc-analysis test/include/data.h,
# twcc_pkt1): base 1, 9 packets, reference 6197520, one run-length chunk of small deltas
# 7, 3, 11, 14, 0, 1, 0, 2, 6 ms, one byte of padding.
WIRESHARK_PKT1 = bytes((
    0xaf, 0xcd, 0x00, 0x07, 0x00, 0x00, 0x00, 0x01, 0xdd, 0x58, 0x6e, 0xb6, 0x00, 0x01, 0x00,
    0x09, 0x5e, 0x91, 0x10, 0x00, 0x20, 0x09, 0x1c, 0x0c, 0x2c, 0x38, 0x00, 0x04, 0x00, 0x08,
    0x18, 0x01))


def test_parse_feedback_reads_pion_and_wiresharks_chrome_vectors() -> None:
    fb = twcc.parse_feedback(PION_EXAMPLE4)
    assert (fb.sender_ssrc, fb.media_ssrc, fb.base_seq, fb.reference_time, fb.fb_count) == (
        0xFA17FA17, 0x193DD8BB, 4, 1074030, 1)
    base = 1074030 * 64_000
    gaps = [19, 9, 9, 4, 3, 3, 4]
    assert fb.arrivals == tuple(base + sum(gaps[:i + 1]) * 1000 for i in range(7))
    fb = twcc.parse_feedback(PION_EXAMPLE3)
    assert fb.base_seq == 372 and fb.fb_count == 64
    assert [a - 4567386 * 64_000 for a in fb.arrivals if a is not None] == [
        t * 250 for t in (8190, 16280, 16488, 16488, 16696, 16696)]
    fb = twcc.parse_feedback(WIRESHARK_PKT1)
    assert (fb.sender_ssrc, fb.media_ssrc, fb.base_seq, fb.reference_time) == (
        1, 0xDD586EB6, 1, 6197520)
    gaps = [7, 3, 11, 14, 0, 1, 0, 2, 6]
    assert [a - 6197520 * 64_000 for a in fb.arrivals if a is not None] == [
        sum(gaps[:i + 1]) * 1000 for i in range(9)]


@pytest.mark.parametrize("seed", range(6))
def test_parse_feedback_inverts_the_encoder_exactly(seed: int) -> None:
    """Whatever the recorder reports (loss, reordering, wrap, large and negative deltas,
    splits) parse_feedback reads as the independent parser does."""
    rng = random.Random(seed)
    recorder = TwccRecorder(origin=0.0)
    seq = rng.randrange(0x10000)
    t = rng.random() * 100
    for _ in range(10):
        for _ in range(rng.randrange(1, 400)):
            if rng.random() > 0.15:
                t += rng.choice((0.0, 0.0003, 0.004, 0.07, 2.0))
                recorder.record((seq + rng.choice((0, 0, 0, -2))) & 0xFFFF, t, 9)
            seq += 1
        for packet in recorder.feedback(3):
            ours, theirs = twcc.parse_feedback(packet), parse(packet)
            assert ours.base_seq == theirs.base_seq and ours.fb_count == theirs.fb_count
            assert list(ours.arrivals) == [None if a is None else a * DELTA for a in
                                           theirs.arrivals.values()]


DELTA = twcc.DELTA_US


@pytest.mark.parametrize("bad", [
    b"", PION_EXAMPLE4[:-4], PION_EXAMPLE4 + b"\0",  # lengths
    bytes((0x8e,)) + PION_EXAMPLE4[1:],  # FMT 14
    PION_EXAMPLE4[:1] + bytes((206,)) + PION_EXAMPLE4[2:],  # PSFB
    PION_EXAMPLE4[:3] + bytes((8,)) + PION_EXAMPLE4[4:],  # header length says 36 bytes
    PION_EXAMPLE4[:14] + struct.pack("!H", 0) + PION_EXAMPLE4[16:],  # no status
    PION_EXAMPLE4[:14] + struct.pack("!H", 200) + PION_EXAMPLE4[16:],  # chunks run out
    PION_EXAMPLE4[:20] + struct.pack("!H", 0x6007) + PION_EXAMPLE4[22:],  # reserved symbol 3
    PION_EXAMPLE4[:20] + struct.pack("!H", 0x4007) + PION_EXAMPLE4[22:],  # 14 bytes of deltas
    PION_EXAMPLE4[:20] + struct.pack("!H", 0x0000) + PION_EXAMPLE4[22:],  # empty run
    PION_EXAMPLE4[:-1] + bytes((40,)),  # padding longer than the packet
], ids=range(12))
def test_a_malformed_feedback_is_refused_with_malformed(bad: bytes) -> None:
    with pytest.raises(twcc.FeedbackError) as caught:
        twcc.parse_feedback(bad)
    assert caught.value.reason == "malformed"


def test_a_huge_feedback_is_refused_before_any_work() -> None:
    """One run chunk claims 8,191 statuses in 2 bytes: the count is bounded, as the size."""
    header = struct.pack("!BBHIIHHI", 0x8F, 205, 5, 1, 2, 0, 0xFFFF, 0)
    packet = header + struct.pack("!HH", 0x1FFF, 0x1FFF)  # not-received runs
    with pytest.raises(twcc.FeedbackError) as caught:
        twcc.parse_feedback(packet)
    assert caught.value.reason == "huge"
    ok = header[:14] + struct.pack("!H", twcc.MAX_PARSE_STATUSES) + header[16:]
    assert twcc.parse_feedback(ok + struct.pack("!HH", 0x1FFF, 0)).arrivals == (
        None,) * twcc.MAX_PARSE_STATUSES
    big = struct.pack("!BBH", 0x8F, 205, 399) + bytes(1596)
    with pytest.raises(twcc.FeedbackError) as caught:
        twcc.parse_feedback(big)
    assert caught.value.reason == "huge"


def test_random_bytes_only_ever_raise_feedback_error() -> None:
    rng = random.Random(5)
    parsed = 0
    for _ in range(3000):
        body = bytes(rng.randrange(256) for _ in range(rng.choice((0, 4, 8, 12, 40, 200))))
        length = 16 + len(body)
        packet = struct.pack("!BBHIIHHI", 0x8F | rng.choice((0, 0x20)), 205, length // 4 - 1 + 1,
                             1, 2, rng.randrange(0x10000), rng.randrange(1, 300),
                             rng.randrange(1 << 32)) + body
        try:
            fb = twcc.parse_feedback(packet)
        except twcc.FeedbackError:
            continue
        parsed += 1
        assert len(fb.arrivals) <= twcc.MAX_PARSE_STATUSES
    assert parsed > 0


def test_feedback_in_finds_each_transport_feedback_of_a_compound_packet() -> None:
    """Padded ones too (aiortc's parser refuses those: media/transport.py reads them first);
    a truncated tail ends the walk."""
    rr = struct.pack("!BBHI", 0x80, 201, 1, 5)
    nack = struct.pack("!BBHIIHH", 0x81, 205, 3, 1, 2, 10, 0)
    compound = rr + PION_EXAMPLE4 + nack + PION_EXAMPLE3
    assert twcc.feedback_in(compound) == [PION_EXAMPLE4, PION_EXAMPLE3]
    assert twcc.feedback_in(rr + PION_EXAMPLE4[:-4]) == []
    assert twcc.feedback_in(b"") == [] and twcc.feedback_in(b"\x8f\xcd") == []


def test_hostile_compound_packets_only_ever_give_bounded_feedback_or_feedback_error() -> None:
    """What a subscriber's transport hands the estimator (media/transport.py): any bytes."""
    rng = random.Random(11)
    for _ in range(2000):
        parts = [rng.choice((PION_EXAMPLE4, PION_EXAMPLE3, WIRESHARK_PKT1,
                             bytes(rng.randrange(256) for _ in range(rng.randrange(40)))))
                 for _ in range(rng.randrange(1, 4))]
        data = bytearray(b"".join(parts))
        for _ in range(rng.randrange(4)):
            if data:
                data[rng.randrange(len(data))] = rng.randrange(256)
        for packet in twcc.feedback_in(bytes(data)):
            assert packet[1] == 205 and packet[0] & 0x1F == 15 and len(packet) <= len(data)
            try:
                twcc.parse_feedback(packet)
            except twcc.FeedbackError:
                pass
