"""Recording a meeting at the owner node: RTP packets into files, never decoded.

The forwarding path's only cost is `TrackQueue.__call__`: a producer's `tap`
appends a reference to the packet it just forwarded to a bounded deque (the
oldest is dropped and counted when full; no lock, no await). One writer thread
per recorder drains the queues every `POLL_S`, assembles frames (RTP timestamp
+ marker bit + sequence continuity), depacketizes and muxes with PyAV:
Opus and VP8 into WebM, H.264 into MPEG-TS (Annex B as received: no avcC or
picture size needed up front, and a file cut short still plays). One file per
track. Timestamps: each track's RTP clock, anchored relative to the recorder's
start (the common zero of all files of one recording) by the publisher's last
sender report (Producer.last_sr: RTP time ↔ our arrival time of the report),
or by the arrival time of the stream's first packet before any report; an SSRC
change re-anchors the same way.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from .depacketize import depacketize, frame_start, vp8_size
from .errors import NotFoundError
from .events import MediaEvent, ProducerAdded, ProducerClosed
from .producer import Producer, SenderReportRef
from .router import Router
from .rtp import EXT_BLOCK_LEN, ForwardPacket
from .types import Kind

logger = logging.getLogger(__name__)

QUEUE_PACKETS = 2048  # per track: ~2 s of 720p video, ~40 s of audio
POLL_S = 0.02
STALE_FRAME_S = 1.0  # an incomplete video frame waits this long for its packets
# A writer killed mid-file leaves what reached the disk: close a WebM cluster every second
# and hand each one to the OS at once, so a cut file plays up to about a second before.
WEBM_OPTIONS = {"cluster_time_limit": "1000", "flush_packets": "1"}
MAX_REPORT_SKEW_S = 2.0  # a sender report placing a packet further from its arrival is ignored


class WriteFailed(Exception):
    """The track's file cannot be written (disk full, I/O error)."""


class TrackQueue:
    """A producer's tap: bounded, drop-oldest, never blocks the forwarding path."""

    __slots__ = ("dropped", "maxlen", "packets")

    def __init__(self, maxlen: int = QUEUE_PACKETS) -> None:
        self.maxlen = maxlen
        self.packets: deque[ForwardPacket] = deque(maxlen=maxlen)
        self.dropped = 0

    def __call__(self, fp: ForwardPacket) -> None:
        packets = self.packets
        if len(packets) == self.maxlen:
            self.dropped += 1  # deque(maxlen) drops the oldest itself
        packets.append(fp)


@dataclass
class TrackFile:
    producer_id: str
    peer_id: str
    kind: str
    source: str
    codec: str
    path: str
    frames: int
    dropped_packets: int
    dropped_frames: int
    anchored_by: str  # "sender_report" or "arrival" (see TrackWriter._anchor)
    failed: str | None  # the write error that stopped this track, if one did


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:64] or "_"


class TrackWriter:
    """One producer's file: frame assembly and muxing, on the writer thread only."""

    def __init__(self, producer: Producer, directory: Path, start: float,
                 ask_keyframe: Callable[[], None], queue_packets: int = QUEUE_PACKETS) -> None:
        self.producer_id = producer.id
        self.peer_id = producer.peer_id
        self.kind = producer.kind
        self.source = producer.source.value
        self.codec = producer.codec.name
        self.clock = producer.codec.clock_rate
        ext = ".ts" if self.codec == "H264" else ".webm"
        self.path = directory / f"{_safe(producer.peer_id)}-{self.source}-{producer.id[:8]}{ext}"
        self.queue = TrackQueue(queue_packets)
        self.closed = False  # set on the loop when the producer goes; the thread finishes up
        self._start = start
        self._ask_keyframe = ask_keyframe
        # read from the writer thread: one attribute load of an object the loop replaces whole
        self._sender_report: Callable[[], SenderReportRef | None] = lambda: producer.last_sr
        self.anchored_by = "arrival"  # how the stream was placed on the recording's clock
        self._container: Any = None
        self._stream: Any = None
        self._epoch: int | None = None
        self._last_ts = 0
        self._last_pts: int | None = None
        self._pts = 0
        # video frame assembly
        self._pending: dict[int, dict[int, ForwardPacket]] = {}  # rtp ts -> ext seq -> packet
        self._last_end: int | None = None  # ext seq of the last frame's marker packet
        self._need_keyframe = True
        self.frames = 0
        self.dropped_frames = 0
        self.failed: str | None = None  # why the file stopped being written

    def info(self) -> TrackFile:
        return TrackFile(self.producer_id, self.peer_id, self.kind.value, self.source,
                         self.codec, str(self.path), self.frames, self.queue.dropped,
                         self.dropped_frames, self.anchored_by, self.failed)

    # -- per packet ---------------------------------------------------------------------
    def drain(self) -> None:
        packets = self.queue.packets
        while packets:
            fp = packets.popleft()
            if self.failed is not None:
                packets.clear()  # the file cannot be written: discard, once per drain
                return
            try:
                self._packet(fp)
            except WriteFailed as exc:  # disk full, I/O error: this track stops, logged once
                self.failed = str(exc.__cause__ or exc)
                logger.error("recorder: %s: writing failed, track stopped: %s",
                             self.path.name, self.failed)
                self._close()
            except Exception:  # a garbage payload costs that frame, never the recording
                logger.exception("recorder: %s: packet dropped", self.path.name)
                self._drop_frame()

    def _packet(self, fp: ForwardPacket) -> None:
        if fp.epoch != self._epoch:  # first packet, or the publisher's SSRC changed
            self._epoch = fp.epoch
            self._pending.clear()
            self._last_end = None
            self._need_keyframe = True
            self._anchor(fp)
        if self.kind is Kind.AUDIO:
            self._write(fp.tail[EXT_BLOCK_LEN:], self._timestamp(fp.ts), True)
            return
        if self._last_end is not None and fp.ext_seq <= self._last_end:
            return  # late packet of a frame already written or dropped
        self._pending.setdefault(fp.ts, {})[fp.ext_seq] = fp
        self._assemble(fp.arrival)

    def _anchor(self, fp: ForwardPacket) -> None:
        """Place a (re)starting stream on the recording's clock: by the publisher's last
        sender report when there is one for this SSRC (its RTP clock against our arrival time
        of the report: audio and video of one sender stay in step), else by this packet's
        arrival."""
        local = fp.arrival
        sr = self._sender_report()
        if sr is not None and sr.epoch == fp.epoch:
            delta = (fp.ts - sr.rtp_ts) & 0xFFFFFFFF
            if delta >= 1 << 31:
                delta -= 1 << 32
            by_report = sr.local + delta / self.clock
            if abs(by_report - fp.arrival) < MAX_REPORT_SKEW_S:  # else a stale or bogus SR
                local = by_report
                self.anchored_by = "sender_report"
        pts = round((local - self._start) * self.clock)
        if self._last_pts is not None:
            pts = max(pts, self._last_pts + 1)
        self._pts = max(0, pts)
        self._last_ts = fp.ts

    def _timestamp(self, ts: int) -> int:
        """RTP timestamp → pts in clock units; wraps and small reorderings handled."""
        delta = (ts - self._last_ts) & 0xFFFFFFFF
        if delta >= 1 << 31:
            delta -= 1 << 32
        self._last_ts = ts
        self._pts += delta
        return self._pts

    # -- video frames -------------------------------------------------------------------
    def _assemble(self, now: float) -> None:
        while True:
            complete = None
            for ts, frame in self._pending.items():
                seqs = sorted(frame)
                last = frame[seqs[-1]]
                if not last.marker or seqs[-1] - seqs[0] + 1 != len(seqs):
                    continue
                first = frame[seqs[0]]
                follows = self._last_end is not None and seqs[0] == self._last_end + 1
                if follows or frame_start(self.codec, first.tail[EXT_BLOCK_LEN:]):
                    complete = (ts, seqs, follows)
                    break
            if complete is None:
                break
            ts, seqs, follows = complete
            frame = self._pending.pop(ts)
            # frames before this one that never completed are lost
            for other in [t for t, f in self._pending.items() if min(f) < seqs[0]]:
                del self._pending[other]
                self._drop_frame()
            if not follows and self._last_end is not None:
                self._drop_frame()  # a whole frame went missing in between
            self._last_end = seqs[-1]
            keyframe = frame[seqs[0]].keyframe
            if self._need_keyframe and not keyframe:
                self.dropped_frames += 1
                continue
            payload = depacketize(self.codec, [frame[s].tail[EXT_BLOCK_LEN:] for s in seqs])
            self._need_keyframe = False
            self._write(payload, self._timestamp(ts), keyframe)
        for ts in [t for t, f in self._pending.items()
                   if now - min(p.arrival for p in f.values()) > STALE_FRAME_S]:
            del self._pending[ts]
            self._drop_frame()

    def _drop_frame(self) -> None:
        self.dropped_frames += 1
        if self.kind is Kind.VIDEO and not self._need_keyframe:
            self._need_keyframe = True
            self._ask_keyframe()

    # -- muxing -------------------------------------------------------------------------
    def _open(self, payload: bytes) -> bool:
        stream: Any
        if self.codec == "H264":
            container = av.open(str(self.path), "w", format="mpegts",
                                options={"flush_packets": "1"})
            stream = container.add_stream("h264", rate=90000)
        elif self.codec == "VP8":
            size = vp8_size(payload)
            if size is None:
                return False
            container = av.open(str(self.path), "w", format="webm", options=WEBM_OPTIONS)
            stream = container.add_stream("libvpx", rate=30)
            stream.width, stream.height = size
            stream.pix_fmt = "yuv420p"
        else:
            container = av.open(str(self.path), "w", format="webm", options=WEBM_OPTIONS)
            stream = container.add_stream("libopus", rate=48000)
            stream.layout = "stereo"
        self._container, self._stream = container, stream
        return True

    def _write(self, payload: bytes, pts: int, keyframe: bool) -> None:
        if self._last_pts is not None and pts <= self._last_pts:
            self.dropped_frames += 1  # reordered or repeated: the muxer needs rising times
            return
        try:
            if self._container is None and not self._open(payload):
                self.dropped_frames += 1
                return
            packet = av.Packet(payload)
            packet.pts = packet.dts = pts
            packet.time_base = Fraction(1, self.clock)
            packet.is_keyframe = keyframe
            packet.stream = self._stream
            self._container.mux(packet)
        except (OSError, av.FFmpegError) as exc:
            raise WriteFailed(str(exc)) from exc
        self._last_pts = pts
        self.frames += 1

    def finish(self) -> None:
        self.drain()
        self._close()

    def _close(self) -> None:
        if self._container is not None:
            container, self._container = self._container, None
            try:
                container.close()
            except Exception as exc:  # noqa: BLE001 - whatever it is, the track is over
                logger.error("recorder: closing %s: %s", self.path.name, exc)
                self.failed = self.failed or str(exc)


class Recorder:
    """Records every producer of a router while it is running (`start`/`stop`)."""

    def __init__(self, router: Router, directory: Path, zero: float | None = None,
                 queue_packets: int = QUEUE_PACKETS) -> None:
        """`zero`: the time.monotonic() that is time 0 in every file (default: `start`);
        recorders of one recording share it when the meeting's router is replaced."""
        self.router = router
        self._zero = zero
        self._queue_packets = queue_packets
        self.directory = directory
        self.started_at: float | None = None  # wall clock (time.time())
        self._tracks: dict[str, TrackWriter] = {}
        self._finished: list[TrackWriter] = []
        self._lock = threading.Lock()  # the track table, between the loop and the thread
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._remove_listener: Callable[[], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._start = 0.0

    @property
    def running(self) -> bool:
        return self._thread is not None and not self._stop.is_set()

    def start(self) -> None:
        """Attach to every producer now and later; ask each video one for a keyframe."""
        if self._thread is not None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        self._loop = asyncio.get_running_loop()
        self._start = time.monotonic() if self._zero is None else self._zero
        self.started_at = time.time()
        self._remove_listener = self.router.add_listener(self._on_event)
        for info in self.router.producers():
            self._attach(self.router.get_producer(info.id))
        self._thread = threading.Thread(target=self._run, name=f"recorder-{self.router.id}",
                                        daemon=True)
        self._thread.start()

    async def stop(self) -> list[TrackFile]:
        """Detach, let the writer finish its queues and close the files; idempotent."""
        if self._thread is None or self._stop.is_set():
            return [t.info() for t in self._finished]
        if self._remove_listener is not None:
            self._remove_listener()
        with self._lock:
            for writer in self._tracks.values():
                self._detach(writer)
        self._stop.set()
        await asyncio.to_thread(self._thread.join)
        return [t.info() for t in self._finished]

    def _on_event(self, event: MediaEvent) -> None:
        if isinstance(event, ProducerAdded):
            self._attach(self.router.get_producer(event.producer.id))
        elif isinstance(event, ProducerClosed):
            with self._lock:
                writer = self._tracks.get(event.producer_id)
                if writer is not None:
                    self._detach(writer)

    def _attach(self, producer: Producer) -> None:
        if producer.closed or producer.id in self._tracks:
            return

        def ask_keyframe() -> None:  # from the writer thread, through the loop
            loop = self._loop
            if loop is not None and not loop.is_closed():
                loop.call_soon_threadsafe(producer.request_keyframe, time.monotonic(), False)

        writer = TrackWriter(producer, self.directory, self._start, ask_keyframe,
                             self._queue_packets)
        with self._lock:
            self._tracks[producer.id] = writer
        producer.tap = writer.queue
        producer.request_keyframe(time.monotonic(), count_suppressed=False)

    def _detach(self, writer: TrackWriter) -> None:
        try:
            producer = self.router.get_producer(writer.producer_id)
        except NotFoundError:  # already gone from the router
            producer = None
        if producer is not None and producer.tap is writer.queue:
            producer.tap = None
        writer.closed = True

    def _run(self) -> None:
        while True:
            stopping = self._stop.wait(POLL_S)
            with self._lock:
                writers = list(self._tracks.values())
            for writer in writers:
                if writer.closed:
                    writer.finish()
                    with self._lock:
                        self._tracks.pop(writer.producer_id, None)
                    self._finished.append(writer)
                else:
                    writer.drain()
            if stopping:
                return

    def stats(self) -> dict[str, Any]:
        with self._lock:
            writers = list(self._tracks.values())
        return {"tracks": [w.info().__dict__ for w in writers + self._finished]}
