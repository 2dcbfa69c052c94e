"""Recording a meeting at the owner node: RTP packets into logs, muxed in another process.

The forwarding path's only cost is the tap: a producer's `tap` is the track's `TrackLog`
(media/packetlog.py, in C: media/_packetlog_c.c), one C call that appends the packet's record
(RTP fields, arrival time) to a pending buffer while the packet is still in the cache, with a
reference to its payload, not a copy (bounded: a packet that finds `queue_packets` records
pending is dropped and counted; no lock, no await). One writer thread per recorder wakes every
`POLL_S` and writes every track's pending records to its packet log in one C call
(`flush_all`) that releases the GIL once for all the writes (each payload written from the
packet's own bytes, then let go); the publisher's sender reports go through the same tap
(`report_tap`), so each is logged where it arrived among the packets and the mux places each
packet by the report known when it came: no depacketizing, no PyAV, nothing per frame in the
SFU process (Janus's .mjr + janus-pp-rec, but muxed live). The thread also starts the mux process (`python -m
media.recmux --follow`, media/trackmux.py), names each new log to it on its stdin, and at
`stop` closes that stdin and collects the result: the files, WebM (Opus, VP8) or MPEG-TS
(H.264), one per track, where they always were. A server killed mid-recording closes that
stdin too: the mux finishes every file up to the log's last whole record. The writer asks the
publisher for a keyframe when it sees a hole in a video track's sequence numbers (the mux
drops frames up to the next keyframe): the tap hands it the packets that broke the sequence.
The writer thread runs one real-time priority step below the forwarding thread if it inherited
real-time scheduling (a server run SCHED_RR, as the bench runs it): its drains must never keep
the forwarding thread off its core.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .errors import NotFoundError
from .events import MediaEvent, ProducerAdded, ProducerClosed
from .packetlog import SUFFIX, MuxLimits, TrackLog, flush_all, header_bytes
from .producer import Producer
from .router import Router
from .rtp import ForwardPacket
from .types import Kind

logger = logging.getLogger(__name__)

QUEUE_PACKETS = 2048  # records pending per track: ~2 s of 720p video, ~40 s of audio
# Each wake-up of the writer costs the SFU process ~35-60 us of CPU on a loaded 2-core box
# (the thread's wake-up and the GIL's hand-over, even with nothing to do), and each batch a
# write per track, all of it from cold caches (the packets, the files, the encoder): every
# 0.4 s (batches of ~50 video / 20 audio packets) the writer's CPU per packet is 3.0 us
# where 0.2 s made it 3.8 and 50 ms ~9 (bench/record.py, one process, the two alternating;
# docs/benchmarks.md "Recording"). The price: a hole in a video track is seen (and its
# keyframe asked for) up to 0.4 s later, and a killed server loses up to 0.4 s more from
# the queues.
POLL_S = 0.4
# A poll that found every queue empty (no publisher sending, or none yet) doubles the wait, up
# to IDLE_POLL_S; the first packet seen brings it back to POLL_S. An idle recording's
# wake-ups were most of the writer's cost per packet over a whole meeting with pauses (and
# over the bench, whose recording server idles while the other one is measured). The price:
# the first packets after a pause wait up to IDLE_POLL_S in their queue (2048 packets: ample).
IDLE_POLL_S = 1.0
REASK_S = 0.5  # still no keyframe after asking (a hole, the start): ask again after this
MUX_TIMEOUT_S = 120.0  # at stop, for the mux to finish files it has followed live
_ROOT = Path(__file__).resolve().parent.parent  # where `media` imports from


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
    """One producer's packet log, written by the recorder's thread only."""

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
        self.log_path = self.path.with_name(self.path.name + SUFFIX)
        # the producer's tap: records encoded as packets are forwarded, written by drain
        self.queue: Any = TrackLog(self.kind is Kind.VIDEO, queue_packets)
        if producer.last_sr is not None:  # the report known before the first packet
            self.queue.report(producer.last_sr)
        self.closed = False  # set on the loop when the producer goes; the thread finishes up
        self._start = start
        self._ask_keyframe = ask_keyframe
        self._file: IO[bytes] | None = None
        # a video file starts at a keyframe: the recorder asked for one when it attached, and
        # asks again every REASK_S until it comes (the producer's rate limit may have eaten it)
        self._awaiting_keyframe = self.kind is Kind.VIDEO
        self._asked_at = time.monotonic()
        self.packets = 0
        self.failed: str | None = None  # why the log stopped being written
        self.muxed: dict[str, Any] | None = None  # the mux process's result, after stop

    @property
    def dropped(self) -> int:
        """Packets the tap left out: the writer behind by `queue_packets`, or unencodable."""
        return int(self.queue.dropped + self.queue.invalid)

    def info(self) -> TrackFile:
        m = self.muxed or {}
        return TrackFile(self.producer_id, self.peer_id, self.kind.value, self.source,
                         self.codec, str(self.path), int(m.get("frames", 0)),
                         self.dropped, int(m.get("dropped_frames", 0)),
                         str(m.get("anchored_by", "arrival")), self.failed or m.get("failed"))

    @property
    def has_file(self) -> bool:
        """Whether the track's file exists: the mux made it (a video track needs a keyframe
        for that), or, without the mux's word (it died), it is on disk."""
        if self.muxed is not None:
            return self.muxed.get("file") is not None
        return self.path.exists()

    def open(self) -> None:
        """Create the log with its header (the writer thread, before the first drain)."""
        try:
            self._file = open(self.log_path, "wb", buffering=0)  # noqa: SIM115
            self._write(header_bytes({
                "codec": self.codec, "clock_rate": self.clock, "kind": self.kind.value,
                "file": self.path.name, "start": self._start, "producer_id": self.producer_id,
                "peer_id": self.peer_id, "source": self.source}))
        except OSError as exc:
            self._fail(exc)

    # -- per poll: the recording's work in the writer thread ---------------------------
    def flush_job(self) -> tuple[Any, int] | None:
        """(its TrackLog, the log's fd) for flush_all, or None when the log cannot be
        written (the tap was closed then: nothing is pending)."""
        if self._file is None or self.failed is not None:
            return None
        return self.queue, self._file.fileno()

    def drain(self) -> bool:
        """Write what the tap encoded since the last drain (one track: the recorder's
        thread flushes every track at once); whether it held packets."""
        job = self.flush_job()
        if job is None:
            return False
        [result] = flush_all([job])
        return self.flushed(result)

    def flushed(self, result: int | OSError) -> bool:
        """After flush_all: the packets written (or why not); keyframes asked for at the
        holes the tap saw, and again every REASK_S while none comes. Whether it held any."""
        if isinstance(result, OSError):
            self._fail(result)
            return True
        for fp, nxt, epoch in self.queue.take_odd():
            self._watch_sequence(fp, nxt, epoch)
        self.packets += result
        if self._awaiting_keyframe and result:
            now = time.monotonic()
            if now - self._asked_at >= REASK_S:
                self._asked_at = now
                self._ask_keyframe()
        return result > 0

    def _watch_sequence(self, fp: ForwardPacket, nxt: int, epoch: int) -> None:
        """A packet that broke the sequence (`nxt`, `epoch`: what the tap expected before
        it, -1 for none). A hole in a video track costs frames up to the next keyframe: ask
        for one now."""
        if fp.epoch != epoch:  # first packet, or a new source: needs a keyframe
            if epoch != -1:
                self._awaiting_keyframe = True
            nxt = -1
        if fp.keyframe:
            self._awaiting_keyframe = False
        elif nxt >= 0 and fp.ext_seq > nxt and (
                not self._awaiting_keyframe or fp.arrival - self._asked_at >= REASK_S):
            # asked again while still waiting: the producer may have suppressed a request
            self._awaiting_keyframe, self._asked_at = True, fp.arrival
            self._ask_keyframe()

    def _write(self, data: bytes | bytearray) -> None:
        assert self._file is not None
        view = memoryview(data)
        while view:
            written = self._file.write(view)
            if not written:
                raise OSError("log write made no progress")
            view = view[written:]

    def _fail(self, exc: OSError) -> None:
        self.failed = str(exc)
        self.queue.close()  # the tap does nothing from now on
        logger.error("recorder: %s: writing failed, track stopped: %s", self.log_path.name,
                     self.failed)
        self.close()

    def finish(self) -> None:
        self.drain()
        self.close()

    def close(self) -> None:
        self.queue.close()  # what is still pending is not written any more: freed
        if self._file is not None:
            file, self._file = self._file, None
            try:
                file.close()
            except OSError as exc:
                self.failed = self.failed or str(exc)


def below_forwarding() -> None:
    """The calling (writer) thread one step below the real-time priority it inherited, if it
    did (a server run SCHED_RR, as the bench runs it): at the forwarding thread's own
    priority, a writer woken on its core kept it until it slept again (a drain of every
    track), however long the forwarding thread waited; now the forwarding thread preempts it
    at once. Still real-time, it is not queued behind ordinary processes (the mux) while the
    forwarding thread waits for the GIL it holds; at the lowest real-time priority it can only
    go to SCHED_OTHER. Not real-time: unchanged."""
    try:
        policy = os.sched_getscheduler(0)  # 0: this thread
        if policy not in (os.SCHED_RR, os.SCHED_FIFO):
            return
        priority = os.sched_getparam(0).sched_priority
        if priority > os.sched_get_priority_min(policy):
            os.sched_setscheduler(0, policy, os.sched_param(priority - 1))
        else:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    except (AttributeError, OSError):  # not Linux, or not allowed: as it was
        pass


class MuxProcess:
    """The recorder's `python -m media.recmux --follow` child, driven from its thread."""

    def __init__(self, limits: MuxLimits | None = None) -> None:
        env = dict(os.environ)
        # its result is one JSON object on stdout: unbuffered (as a server's environment often
        # asks), it came in hundreds of small writes, each a wake-up and a read of our thread
        env.pop("PYTHONUNBUFFERED", None)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(_ROOT), env.get("PYTHONPATH", "")) if p)
        # its own session: a Ctrl-C meant for the server must not cut the files short;
        # it ends when its stdin does (our stop, or this process's death)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "media.recmux", "--follow",
             *(limits or MuxLimits()).argv()], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True, env=env, cwd=str(_ROOT),
            start_new_session=True)

    def add(self, log: Path) -> bool:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(f"{log}\n")
            self.proc.stdin.flush()
            return True
        except (OSError, ValueError) as exc:
            logger.error("recorder: the mux process is gone (%s): %s stays a log", exc, log)
            return False

    def wake(self) -> bool:
        """Tell it the logs grew (an empty line): it reads them now, not at its next look."""
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write("\n")
            self.proc.stdin.flush()
            return True
        except (OSError, ValueError) as exc:
            logger.error("recorder: the mux process is gone (%s): the tracks stay logs", exc)
            return False

    def finish(self) -> dict[str, dict[str, Any]]:
        """Close its stdin, wait for its result: log path → that track's result."""
        try:
            out, _ = self.proc.communicate(timeout=MUX_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
            logger.error("recorder: the mux process took over %.0f s: killed", MUX_TIMEOUT_S)
        except (OSError, ValueError) as exc:
            logger.error("recorder: the mux process: %s", exc)
            return {}
        try:
            tracks = json.loads(out)["tracks"]
            return {str(t["log"]): t for t in tracks}
        except (ValueError, KeyError, TypeError):
            logger.error("recorder: the mux process exited %s without a result",
                         self.proc.returncode)
            return {}


class Recorder:
    """Records every producer of a router while it is running (`start`/`stop`)."""

    def __init__(self, router: Router, directory: Path, zero: float | None = None,
                 queue_packets: int = QUEUE_PACKETS, mux_limits: MuxLimits | None = None
                 ) -> None:
        """`zero`: the time.monotonic() that is time 0 in every file (default: `start`);
        recorders of one recording share it when the meeting's router is replaced.
        `mux_limits`: the mux process's (media/recmux.py; its defaults when None)."""
        self.router = router
        self.mux_limits = mux_limits
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
        self.polls = 0  # the writer thread's wake-ups

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
        """Detach, let the writer finish its queues and close the files; idempotent. The
        tracks that have a file: one that never got one (a camera whose keyframe never came)
        is not listed (logged by the mux)."""
        if self._thread is None or self._stop.is_set():
            return self._files()
        if self._remove_listener is not None:
            self._remove_listener()
        with self._lock:
            for writer in self._tracks.values():
                self._detach(writer)
        self._stop.set()
        await asyncio.to_thread(self._thread.join)
        return self._files()

    def _files(self) -> list[TrackFile]:
        return [t.info() for t in self._finished if t.has_file]

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
        producer.report_tap = writer.queue.report
        producer.request_keyframe(time.monotonic(), count_suppressed=False)

    def _detach(self, writer: TrackWriter) -> None:
        try:
            producer = self.router.get_producer(writer.producer_id)
        except NotFoundError:  # already gone from the router
            producer = None
        if producer is not None and producer.tap is writer.queue:
            producer.tap = None
            producer.report_tap = None
        writer.closed = True

    def _run(self) -> None:
        below_forwarding()
        try:
            mux: MuxProcess | None = MuxProcess(self.mux_limits)
        except OSError as exc:
            logger.error("recorder: cannot start the mux process (%s): tracks stay logs", exc)
            mux = None
        opened: set[int] = set()
        wait = POLL_S
        while True:
            stopping = self._stop.wait(wait)
            self.polls += 1
            with self._lock:
                writers = list(self._tracks.items())
            live = []
            for key, writer in writers:
                if id(writer) not in opened:
                    opened.add(id(writer))
                    writer.open()
                    if mux is not None and writer.failed is None and not mux.add(
                            writer.log_path):
                        mux = None
                if writer.closed:
                    writer.finish()
                    with self._lock:
                        self._tracks.pop(key, None)
                    self._finished.append(writer)
                elif (job := writer.flush_job()) is not None:
                    live.append((writer, job))
            busy = False
            if live:  # every track's writes with one release of the GIL
                written = flush_all([job for _, job in live])
                for (writer, _), result in zip(live, written, strict=True):
                    busy = writer.flushed(result) or busy
            if busy and not stopping and mux is not None and not mux.wake():
                mux = None  # the mux follows our writes, not a clock of its own
            if stopping:
                break
            wait = POLL_S if busy else min(wait * 2, IDLE_POLL_S)
        results = mux.finish() if mux is not None else {}
        for writer in self._finished:
            writer.muxed = results.get(str(writer.log_path))
            if writer.muxed is None and writer.failed is None:
                writer.failed = "not muxed: its packet log is kept (python -m media.recmux)"

    def stats(self) -> dict[str, Any]:
        with self._lock:
            writers = list(self._tracks.values())
        return {"tracks": [w.info().__dict__ for w in writers + self._finished]}
