"""Recording at the owner node: real aiortc publishers through a Router, files checked by ffprobe."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from media import SFU, rtcp
from media.codecs import vp8_keyframe
from media.packetlog import LoggedPacket, LoggedReport, LogReader
from media.producer import Producer
from media.recmux import mux
from media.recorder import (
    IDLE_POLL_S,
    POLL_S,
    MuxProcess,
    Recorder,
    TrackWriter,
    below_forwarding,
)
from media.rtp import ForwardPacket
from media.trackmux import TrackMuxer
from testkit.aiortc_clients import FPS, EncodedMedia, Publisher, Subscriber, wait_for

needs_ffprobe = pytest.mark.skipif(shutil.which("ffprobe") is None,
                                   reason="ffprobe missing: bash scripts/setup.sh --test")


def probe(path: str, *extra: str) -> dict[str, Any]:
    out = subprocess.run(["ffprobe", "-v", "error", *extra, "-show_streams", "-show_format",
                          "-of", "json", path], capture_output=True, text=True, check=True)
    assert out.stderr == "", out.stderr
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def decode_errors(path: str) -> str:
    out = subprocess.run(["ffmpeg", "-v", "error", "-i", path, "-f", "null", "-"],
                         capture_output=True, text=True, check=False)
    return out.stderr


def first_video_frame_is_keyframe(path: str) -> bool:
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                          "packet=flags", "-read_intervals", "%+#1", "-of", "json", path],
                         capture_output=True, text=True, check=True)
    packets = json.loads(out.stdout)["packets"]
    return bool(packets) and packets[0]["flags"].startswith("K")


async def gone_video_producer(sfu: SFU, media: EncodedMedia, peer: str) -> Producer:
    """A real VP8 producer whose publisher has gone, without its sender report: the
    packets a test then feeds its TrackWriter are its own, placed by arrival time."""
    router = sfu.router("m")
    pub = Publisher(router.add_peer(peer), media, audio=False)
    await pub.publish()
    producer = router.get_producer(pub.producer_id("video"))
    await pub.close()
    producer.last_sr = None
    return producer


@needs_ffprobe
async def test_vp8_and_opus_recorded_without_decoding(sfu: SFU, media: EncodedMedia,
                                                      tmp_path: Path) -> None:
    router = sfu.router("m")
    pub = Publisher(router.add_peer("alice"), media)
    await pub.publish()
    video = router.get_producer(pub.producer_id("video"))
    await wait_for(lambda: video.packets_received > 20, 5)
    await asyncio.sleep(0.7)  # mid-stream: the recording must ask for its own keyframe
    requests = pub.video.keyframe_requests
    recorder = Recorder(router, tmp_path / "rec")
    recorder.start()
    recorder.start()  # idempotent
    await asyncio.sleep(3.0)
    files = await recorder.stop()
    assert await recorder.stop() == files  # idempotent
    assert video.tap is None  # detached: forwarding costs nothing any more
    assert pub.video.keyframe_requests > requests  # PLI through the producer's path
    await pub.close()

    by_kind = {f.kind: f for f in files}
    assert set(by_kind) == {"audio", "video"}
    for kind, codec in (("video", "vp8"), ("audio", "opus")):
        track = by_kind[kind]
        assert track.path.endswith(".webm") and track.dropped_packets == 0
        info = probe(track.path, "-count_frames")
        [stream] = info["streams"]
        assert stream["codec_name"] == codec
        assert "webm" in info["format"]["format_name"] or "matroska" in info["format"]["format_name"]
        duration = float(info["format"]["duration"])
        assert 2.0 <= duration <= 4.0, duration
        assert int(stream["nb_read_frames"]) >= (2 * FPS if kind == "video" else 100)  # 3 s
        assert decode_errors(track.path) == ""
    assert first_video_frame_is_keyframe(by_kind["video"].path)
    # Both files are on the recorder's clock: each starts near its zero, together.
    starts = {kind: float(probe(t.path)["format"]["start_time"]) for kind, t in by_kind.items()}
    print("anchored by", {k: t.anchored_by for k, t in by_kind.items()}, "starts", starts)
    assert all(0 <= start < 0.5 for start in starts.values()), starts
    # Both files share the recorder's clock: the video does not start later than ~0.5 s.
    assert by_kind["video"].frames > 0


@needs_ffprobe
async def test_h264_recorded_as_mpegts_and_a_late_producer_joins(sfu: SFU, media: EncodedMedia,
                                                                  tmp_path: Path) -> None:
    router = sfu.router("m")
    recorder = Recorder(router, tmp_path)
    recorder.start()
    await asyncio.sleep(0.3)
    pub = Publisher(router.add_peer("bob"), media, video="H264", audio=False)
    await pub.publish()  # published after the start: attached from ProducerAdded
    await asyncio.sleep(2.5)
    await pub.close()
    await router.close_peer("bob")  # the producer closes: its file is finished at once
    files = await recorder.stop()
    [track] = files
    assert track.codec == "H264" and track.path.endswith(".ts")
    info = probe(track.path)
    assert info["streams"][0]["codec_name"] == "h264"
    assert decode_errors(track.path) == ""
    assert first_video_frame_is_keyframe(track.path)


async def test_a_full_tap_drops_the_newest_and_counts_without_blocking(
        sfu: SFU, media: EncodedMedia, tmp_path: Path) -> None:
    producer = await gone_video_producer(sfu, media, "nat")
    writer = TrackWriter(producer, tmp_path, time.monotonic(), lambda: None, queue_packets=64)
    packets = [ForwardPacket(i, i * 3000, 0x80, b"\0" * 8 + b"x", i == 0, 0, 0.0)
               for i in range(1000)]
    writer.open()
    start = time.thread_time()  # CPU, not wall: a loaded CI box preempts the loop at will
    for fp in packets:
        writer.queue(fp)
    elapsed = time.thread_time() - start
    writer.finish()
    assert writer.info().dropped_packets == 1000 - 64 and writer.packets == 64
    logged = [r.ext_seq for r in LogReader(writer.log_path).read()
              if isinstance(r, LoggedPacket)]
    assert logged == list(range(64))  # what was pending is kept whole
    # Nothing waited for the writer (936 dropped, not queued behind it), and each call is
    # cheap: ~1 µs each.
    assert elapsed < 0.05


def test_the_writer_thread_runs_below_a_real_time_forwarding_thread() -> None:
    """A server run SCHED_RR (as the bench runs it): the writer thread, which inherits the
    forwarding thread's priority, goes one step below it (the forwarding thread preempts its
    drains), or to SCHED_OTHER from the lowest real-time priority."""
    seen: list[tuple[int, int]] = []

    def thread(priority: int) -> None:
        try:
            os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(priority))
        except PermissionError:
            return
        below_forwarding()
        seen.append((os.sched_getscheduler(0), os.sched_getparam(0).sched_priority))

    for priority in (10, 1):
        worker = threading.Thread(target=thread, args=(priority,))
        worker.start()
        worker.join()
    if not seen:
        pytest.skip("SCHED_RR not permitted here")
    assert seen == [(os.SCHED_RR, 9), (os.SCHED_OTHER, 0)]
    before = os.sched_getscheduler(0), os.sched_getparam(0).sched_priority
    below_forwarding()  # not real-time: unchanged
    assert (os.sched_getscheduler(0), os.sched_getparam(0).sched_priority) == before


@needs_ffprobe
async def test_lost_packets_drop_the_frame_and_wait_for_a_keyframe(
        sfu: SFU, media: EncodedMedia, tmp_path: Path) -> None:
    router = sfu.router("m")
    pub = Publisher(router.add_peer("carol"), media, audio=False)
    await pub.publish()
    video = router.get_producer(pub.producer_id("video"))
    recorder = Recorder(router, tmp_path)
    recorder.start()
    await wait_for(lambda: video.tap is not None and video.keyframes_received > 0, 5)
    await asyncio.sleep(0.5)
    tap = video.tap
    assert tap is not None
    lost = 0

    def lossy(fp: ForwardPacket) -> None:  # every 15th packet never reaches the recorder
        nonlocal lost
        if fp.ext_seq % 15 == 0:
            lost += 1
            return
        tap(fp)

    requests = pub.video.keyframe_requests
    video.tap = lossy
    await asyncio.sleep(1.0)
    video.tap = tap
    await asyncio.sleep(1.0)
    [track] = await recorder.stop()
    await pub.close()
    assert lost > 0 and track.dropped_frames > 0
    assert decode_errors(track.path) == ""  # no frame with a hole was written
    assert pub.video.keyframe_requests > requests  # the writer asked for a keyframe
    assert first_video_frame_is_keyframe(track.path)


def vp8_packets(frames: list[bytes], *, seq: int, ts: int, epoch: int, at: float
                ) -> list[ForwardPacket]:
    """RFC 7741 packets of `frames` (1-byte descriptor, S bit on each frame's first),
    15 frames a second, as the producer hands them to its tap."""
    out = []
    for i, frame in enumerate(frames):
        chunks = [frame[j:j + 1000] for j in range(0, len(frame), 1000)]
        for k, chunk in enumerate(chunks):
            payload = bytes((0x10 if k == 0 else 0x00,)) + chunk
            out.append(ForwardPacket(seq, (ts + i * 6000) & 0xFFFFFFFF,
                                     0x80 if k == len(chunks) - 1 else 0, b"\0" * 8 + payload,
                                     vp8_keyframe(payload), epoch, at + i / 15))
            seq += 1
    return out


def log_track(writer: TrackWriter, packets: list[ForwardPacket]) -> Path:
    """The writer thread's part, in this thread: the packets into the track's log."""
    writer.open()
    for fp in packets:
        writer.queue(fp)
    writer.finish()
    return writer.log_path


@needs_ffprobe
async def test_a_camera_whose_keyframe_never_came_is_not_listed(
        sfu: SFU, media: EncodedMedia, tmp_path: Path) -> None:
    """Its video reaches the recorder without a keyframe until stop: no file is made, and
    stop() lists the microphone's file only (not a file that does not exist)."""
    router = sfu.router("m")
    pub = Publisher(router.add_peer("kim"), media)
    await pub.publish()
    video = router.get_producer(pub.producer_id("video"))
    recorder = Recorder(router, tmp_path)
    recorder.start()
    tap = video.tap
    assert tap is not None
    keyframe_ts: set[int] = set()

    def no_keyframes(fp: ForwardPacket) -> None:  # every keyframe's packets are lost
        if fp.keyframe:
            keyframe_ts.add(fp.ts)
        if fp.ts not in keyframe_ts:
            tap(fp)

    video.tap = no_keyframes
    await wait_for(lambda: bool(keyframe_ts), 5)  # the one asked for at start: lost
    await asyncio.sleep(1.0)
    files = await recorder.stop()
    await pub.close()
    assert keyframe_ts and [f.kind for f in files] == ["audio"]
    for track in files:
        assert Path(track.path).exists() and decode_errors(track.path) == ""
    assert [p.name for p in tmp_path.glob("*.webm")] == [Path(files[0].path).name]
    assert await recorder.stop() == files  # idempotent, the same list


def sender_report(rtp_ts: int) -> rtcp.RtcpSrPacket:
    return rtcp.RtcpSrPacket(ssrc=1, sender_info=rtcp.RtcpSenderInfo(
        ntp_timestamp=1 << 32, rtp_timestamp=rtp_ts, packet_count=0, octet_count=0))


@needs_ffprobe
async def test_a_sender_report_places_only_the_packets_that_came_after_it(
        sfu: SFU, media: EncodedMedia, tmp_path: Path) -> None:
    """Reports are logged where they arrived among the packets: a report that comes 1 s into
    the track (here one placing the first frame 1.5 s late, as a loaded sender's can) does not
    anchor the packets before it, however late the writer drains. A report known before the
    first packet (at attach) does anchor it."""
    producer = await gone_video_producer(sfu, media, "sam")
    start = time.monotonic()
    frames = media.vp8.frames[:30]  # 2 s, starting with a keyframe
    packets = vp8_packets(frames, seq=100, ts=1000, epoch=producer.epoch, at=start)
    late = next(i for i, fp in enumerate(packets) if fp.ts == 1000 + 15 * 6000)
    writer = TrackWriter(producer, tmp_path / "late", start, lambda: None)
    writer.path.parent.mkdir()
    producer.tap, producer.report_tap = writer.queue, writer.queue.report
    for fp in packets[:late]:
        producer.tap(fp)
    # at start + 1.0 s: frame 15's RTP time is 1.5 s in the future
    producer.on_sender_report(sender_report(1000 + 15 * 6000 - 135_000), start + 1.0)
    for fp in packets[late:]:
        producer.tap(fp)
    log = log_track(writer, [])  # the writer drains once, after the report
    records = LogReader(log).read()
    assert [i for i, r in enumerate(records) if isinstance(r, LoggedReport)] == [late]
    [track] = mux([log])
    assert track["anchored_by"] == "arrival"
    assert float(probe(track["file"])["format"]["start_time"]) < 0.1  # not 1.5 s

    # known before the first packet: it places the stream (0.5 s after its arrival here)
    producer.tap = producer.report_tap = None
    producer.last_sr = None
    producer.on_sender_report(sender_report(1000 - 45_000), start)
    writer = TrackWriter(producer, tmp_path / "early", start, lambda: None)
    writer.path.parent.mkdir()
    [track] = mux([log_track(writer, packets)])
    assert track["anchored_by"] == "sender_report"
    assert 0.4 < float(probe(track["file"])["format"]["start_time"]) < 0.6


@needs_ffprobe
async def test_an_ssrc_change_and_a_garbage_frame_leave_a_clean_file(
        sfu: SFU, media: EncodedMedia, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    producer = await gone_video_producer(sfu, media, "dave")
    asks: list[float] = []
    start = time.monotonic()
    writer = TrackWriter(producer, tmp_path, start, lambda: asks.append(time.monotonic()))
    frames = media.vp8.frames[:30]  # 2 s, starting with a keyframe
    first = vp8_packets(frames, seq=100, ts=4_294_000_000, epoch=0, at=start)  # ts wraps
    cut = next(i for i, fp in enumerate(first) if fp.ts == (4_294_000_000 + 20 * 6000)
               & 0xFFFFFFFF)
    # In sequence between frames 19 and 20: X bit set, its byte missing: cannot be parsed.
    garbage = ForwardPacket(first[cut].ext_seq, 4_294_000_000 + 19 * 6000 + 3000, 0x80,
                            b"\0" * 8 + b"\x90", False, 0, start + 1.3)
    packets = first[:cut] + [garbage] + [
        ForwardPacket(fp.ext_seq + 1, fp.ts, fp.marker, fp.tail, fp.keyframe, 0, fp.arrival)
        for fp in first[cut:]]
    # The publisher restarts with a new SSRC (the producer's epoch bumps): new seq and ts bases.
    packets += vp8_packets(frames, seq=7, ts=123, epoch=1, at=start + 2.0)
    [track] = mux([log_track(writer, packets)])
    assert track["frames"] == 20 + 30  # up to the garbage, then from the new source's keyframe
    assert track["failed"] is None and not writer.log_path.exists()  # muxed: log removed
    assert asks == []  # nothing was missing in the sequence: nothing to ask for
    assert "packet dropped" in caplog.text  # the garbage was parsed, refused, logged
    assert decode_errors(track["file"]) == ""
    info = probe(track["file"], "-count_frames")
    assert int(info["streams"][0]["nb_read_frames"]) == 50
    assert 3.5 <= float(info["format"]["duration"]) <= 4.5
    assert first_video_frame_is_keyframe(track["file"])


async def test_a_full_disk_stops_that_track_with_one_logged_error(
        sfu: SFU, media: EncodedMedia, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    producer = await gone_video_producer(sfu, media, "erin")
    start = time.monotonic()
    writer = TrackWriter(producer, tmp_path, start, lambda: None)
    writer.log_path = Path("/dev/full")  # every write: ENOSPC, as on a full disk
    writer.open()
    for r in range(20):  # 40 s of video
        for fp in vp8_packets(media.vp8.frames[:30], seq=r * 1000, ts=r * 180000, epoch=0,
                              at=start + 2 * r):
            writer.queue(fp)
        writer.drain()  # never raises
    writer.finish()
    track = writer.info()
    assert track.failed is not None and "space" in track.failed.lower()
    assert caplog.text.count("writing failed") == 1
    assert writer.queue.pending == 0 and writer.queue.closed
    # the mux process's side: its file on a full disk
    (tmp_path / "log").mkdir()
    log = log_track(TrackWriter(producer, tmp_path / "log", start, lambda: None), [
        fp for r in range(20) for fp in vp8_packets(
            media.vp8.frames[:30], seq=r * 1000, ts=r * 180000, epoch=0, at=start + 2 * r)])
    muxer = TrackMuxer(Path("/dev/full"), "VP8", 90000, "video", start)
    muxer.feed(LogReader(log).read())  # never raises
    muxer.finish()
    assert muxer.failed is not None and "space" in muxer.failed.lower()
    assert caplog.text.count("writing failed") == 2


@needs_ffprobe
async def test_a_file_cut_mid_recording_plays_up_to_about_a_second_before(
        sfu: SFU, media: EncodedMedia, tmp_path: Path) -> None:
    """A mux killed mid-file (no trailer, no cues): what is on disk is a playable WebM."""
    producer = await gone_video_producer(sfu, media, "fred")
    start = time.monotonic()
    packets = [fp for r in range(3)  # 6 s
               for fp in vp8_packets(media.vp8.frames[:30], seq=r * 1000, ts=r * 180000,
                                     epoch=0, at=start + 2 * r)]
    log = log_track(TrackWriter(producer, tmp_path, start, lambda: None), packets)
    muxer = TrackMuxer(tmp_path / "out.webm", "VP8", 90000, "video", start)
    muxer.feed(LogReader(log).read())
    cut = tmp_path / "cut.webm"
    shutil.copyfile(muxer.path, cut)  # the file as a kill -9 now would leave it
    muxer.finish()
    assert muxer.frames == 90
    info = probe(str(cut), "-count_frames")  # probe() also asserts ffprobe printed no error
    assert int(info["streams"][0]["nb_read_frames"]) >= 90 - 2 * FPS
    assert decode_errors(str(cut)) == ""


@needs_ffprobe
async def test_a_stalled_writer_never_holds_up_forwarding(sfu: SFU, media: EncodedMedia,
                                                         tmp_path: Path) -> None:
    """The writer thread stuck (here: its lock held) until every queue has overflowed twice
    over: the SFU forwards every packet it receives meanwhile and the subscriber keeps
    decoding, the recorder's queues drop their oldest packets and count them, and the file
    written afterwards is still clean (the hole costs frames up to the next keyframe).

    Counted against what the publisher sent, not its nominal rate: under CPU load the
    in-process aiortc publisher sends far less (8 to 100 video packets per 2 s here, with
    or without a recorder), and a fixed 2 s stall neither filled the queues nor left the
    nominal frame count."""
    router = sfu.router("m")
    pub = Publisher(router.add_peer("gus"), media)
    await pub.publish()
    sub = Subscriber(router.add_peer("hal"))
    await sub.subscribe(*[p.id for p in router.producers()])
    await wait_for(lambda: sub.frames("video") >= 3, 15)
    queue = int(160 * POLL_S)  # holds a poll's packets (a keyframe's with them): 64 at 0.4 s
    recorder = Recorder(router, tmp_path, queue_packets=queue)
    recorder.start()
    kinds = ("video", "audio")
    producers = {k: router.get_producer(pub.producer_id(k)) for k in kinds}
    consumers = {c.kind.value: c for c in router.peer("hal").consumers}
    video_writer = recorder._tracks[producers["video"].id]

    def started() -> bool:  # the video file has its keyframe: the hole comes after it
        return video_writer.packets > 0 and not video_writer._awaiting_keyframe

    await wait_for(started, 15)

    def counts() -> dict[str, tuple[int, int, int]]:
        return {k: (producers[k].packets_received, consumers[k].packets_sent, sub.frames(k))
                for k in kinds}

    with recorder._lock:  # the writer thread blocks at its next drain
        before = counts()
        await wait_for(lambda: all(producers[k].packets_received - before[k][0] > 2 * queue
                                   for k in kinds), 30)
        after = counts()
    polls = recorder.polls
    await wait_for(lambda: recorder.polls >= polls + 2 and started(), 15)  # a keyframe again
    files = await recorder.stop()
    await pub.close()
    await sub.close()
    for kind in kinds:
        received, forwarded, decoded = (a - b for a, b in zip(after[kind], before[kind]))
        assert forwarded >= received - 2, (kind, received, forwarded)  # 2: in flight
        assert decoded > 0, kind
    by_kind = {f.kind: f for f in files}
    assert by_kind["audio"].dropped_packets > 0 and by_kind["video"].dropped_packets > 0
    for track in files:
        assert decode_errors(track.path) == ""
    assert first_video_frame_is_keyframe(by_kind["video"].path)


@needs_ffprobe
async def test_an_idle_writer_backs_off_and_comes_back_when_packets_flow(
        sfu: SFU, media: EncodedMedia, tmp_path: Path) -> None:
    """Nothing to record (no producer yet): the writer's wait doubles up to IDLE_POLL_S
    (0.4 + 0.8 + 1.0 s: 3 wake-ups in 2.5 s, not 6); a publisher that then comes is
    recorded from its start, and the writer polls every POLL_S again while packets flow."""
    router = sfu.router("m")
    recorder = Recorder(router, tmp_path / "rec")
    recorder.start()
    await asyncio.sleep(2.5)
    idle_polls = recorder.polls
    assert 2 <= idle_polls <= 5, idle_polls
    pub = Publisher(router.add_peer("ivy"), media)
    await pub.publish()
    video = router.get_producer(pub.producer_id("video"))
    await wait_for(lambda: video.packets_received > 20, 5)
    await asyncio.sleep(IDLE_POLL_S)  # the wait under way when they came: up to this
    polls0, t0 = recorder.polls, time.monotonic()
    await asyncio.sleep(2.0)
    busy_rate = (recorder.polls - polls0) / (time.monotonic() - t0)
    files = await recorder.stop()
    await pub.close()
    assert busy_rate >= 0.6 / POLL_S, busy_rate  # ~5 a second, not one
    assert IDLE_POLL_S > 2 * POLL_S
    assert {f.kind for f in files} == {"audio", "video"}
    for track in files:
        assert decode_errors(track.path) == ""
        assert float(probe(track.path)["format"]["duration"]) >= 1.5


def _environ(proc: subprocess.Popen[str]) -> list[bytes]:
    """The running child's environment (/proc reads it empty while the kernel has none to
    give: it failed once in CI right after the start; the child's end is then told)."""
    deadline = time.monotonic() + 5
    while True:
        data = Path(f"/proc/{proc.pid}/environ").read_bytes()
        if data or time.monotonic() > deadline:
            assert data, ("no environment", proc.poll())
            return data.split(b"\0")
        time.sleep(0.01)


def test_the_mux_process_writes_its_result_buffered(monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    """A server run with PYTHONUNBUFFERED=1 (as containers often are): the mux child does
    not inherit it (its result came in hundreds of small writes, each a wake-up of the
    writer thread), and its result still arrives whole."""
    monkeypatch.setenv("PYTHONUNBUFFERED", "1")
    mux_process = MuxProcess()
    try:
        environ = _environ(mux_process.proc)
        assert not any(v.startswith(b"PYTHONUNBUFFERED=") for v in environ)
        assert any(v.startswith(b"PYTHONPATH=") for v in environ)
    finally:
        assert mux_process.finish() == {}  # no logs named: an empty result, parsed
    assert mux_process.proc.returncode == 0


async def test_a_busy_writer_wakes_up_at_most_three_times_a_second(
        sfu: SFU, media: EncodedMedia, tmp_path: Path) -> None:
    """Packets flowing, the writer drains every POLL_S = 0.4 s (2.5 wake-ups a second, not 5):
    each wake-up starts from cold caches, and bigger batches cost less per packet."""
    router = sfu.router("m")
    pub = Publisher(router.add_peer("ivy"), media)
    await pub.publish()
    recorder = Recorder(router, tmp_path / "rec")
    recorder.start()
    video = router.get_producer(pub.producer_id("video"))
    await wait_for(lambda: video.packets_received > 20, 5)
    await asyncio.sleep(POLL_S)
    polls0, t0 = recorder.polls, time.monotonic()
    await asyncio.sleep(2.0)
    busy_rate = (recorder.polls - polls0) / (time.monotonic() - t0)
    await recorder.stop()
    await pub.close()
    assert 1.5 <= busy_rate <= 3.0, busy_rate
