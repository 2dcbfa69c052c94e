"""One recorded track's packet log → its file: frame assembly and muxing with PyAV.

Runs in the mux process (media/recmux.py), never in the SFU's. Opus and VP8 go into WebM,
H.264 into MPEG-TS (Annex B as received: no avcC or picture size needed up front, and a file
cut short still plays). Timestamps: the track's RTP clock, anchored relative to the
recording's start (the common zero of all files of one recording, `start` in the log's
header) by the publisher's last sender report logged before the packet (its RTP time ↔ our
arrival time of the report), or by the arrival time of the stream's first packet before any
report; an SSRC change (a new epoch) re-anchors the same way.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from .depacketize import depacketize, frame_start, vp8_size
from .packetlog import LoggedPacket, LoggedReport

logger = logging.getLogger(__name__)

STALE_FRAME_S = 1.0  # an incomplete video frame waits this long (arrival time) for its packets
# A mux killed mid-file leaves what reached the disk: close a WebM cluster every second
# and hand each one to the OS at once, so a cut file plays up to about a second before.
WEBM_OPTIONS = {"cluster_time_limit": "1000", "flush_packets": "1"}
MAX_REPORT_SKEW_S = 2.0  # a sender report placing a packet further from its arrival is ignored


class WriteFailed(Exception):
    """The track's file cannot be written (disk full, I/O error)."""


class TrackMuxer:
    """Feeds one track's logged records, in log order, into its file."""

    def __init__(self, path: Path, codec: str, clock: int, kind: str, start: float) -> None:
        self.path = path
        self.codec = codec
        self.clock = clock
        self.kind = kind  # "audio" or "video"
        self._start = start
        self._report: LoggedReport | None = None
        self.anchored_by = "arrival"  # how the stream was placed on the recording's clock
        self._container: Any = None
        self._stream: Any = None
        self._epoch: int | None = None
        self._last_ts = 0
        self._last_pts: int | None = None
        self._pts = 0
        self._time_base = Fraction(1, clock)
        # video frame assembly
        self._pending: dict[int, dict[int, LoggedPacket]] = {}  # rtp ts -> ext seq -> packet
        # per pending frame, the earliest arrival of its packets (a lower bound, exact unless
        # a duplicate replaced its first packet): the stale check's quick test
        self._first: dict[int, float] = {}
        self._marked: set[int] = set()  # pending frames that got a marker packet
        self._rescan = False  # a scan ended by an exception: every frame is scanned again
        self._last_end: int | None = None  # ext seq of the last frame's marker packet
        self._need_keyframe = True
        self.frames = 0
        self.dropped_frames = 0
        self.failed: str | None = None  # why the file stopped being written
        self.opened = False  # the file exists: made at the first frame (video: a keyframe)

    def feed(self, records: list[LoggedPacket | LoggedReport]) -> None:
        if self.failed is not None:
            return  # the file cannot be written: the rest is discarded
        packet = self._audio if self.kind == "audio" else self._video
        for record in records:
            if type(record) is LoggedReport:
                self._report = record
                continue
            try:
                packet(record)  # type: ignore[arg-type]
            except WriteFailed as exc:  # disk full, I/O error: this track stops, logged once
                self.failed = str(exc.__cause__ or exc)
                logger.error("recorder: %s: writing failed, track stopped: %s",
                             self.path.name, self.failed)
                self._close()
                return
            except Exception:  # a garbage payload costs that frame, never the recording
                logger.exception("recorder: %s: packet dropped", self.path.name)
                self._drop_frame()

    def _new_epoch(self, fp: LoggedPacket) -> None:
        """The first packet, or the publisher's SSRC changed."""
        self._epoch = fp.epoch
        self._pending.clear()
        self._first.clear()
        self._marked.clear()
        self._last_end = None
        self._need_keyframe = True
        self._anchor(fp)

    def _audio(self, fp: LoggedPacket) -> None:
        if fp.epoch != self._epoch:
            self._new_epoch(fp)
        self._write(fp.payload, self._timestamp(fp.ts), True)

    def _video(self, fp: LoggedPacket) -> None:
        # Per packet in the mux process: kept to what each packet needs (the mux's CPU per
        # recorded packet is bench/record.py's); the frame's work is _assemble's.
        ext_seq, ts, marker, _, epoch, arrival, _ = fp
        if epoch != self._epoch:
            self._new_epoch(fp)
        last_end = self._last_end
        if last_end is not None and ext_seq <= last_end:
            return  # late packet of a frame already written or dropped
        first = self._first
        frame = self._pending.get(ts)
        if frame is None:
            self._pending[ts] = frame = {}
            first[ts] = arrival
        elif arrival < first[ts]:
            first[ts] = arrival
        frame[ext_seq] = fp
        if marker:
            self._marked.add(ts)
        # A frame is complete only with its marker packet, and no other pending frame can
        # have become writable (the last scan left none, and _last_end has not moved since):
        # without a marker in this packet's frame, only the stale check is due.
        if ts in self._marked or self._rescan:
            self._assemble(arrival)
        elif arrival - min(first.values()) > STALE_FRAME_S:
            self._drop_stale(arrival)

    def _anchor(self, fp: LoggedPacket) -> None:
        """Place a (re)starting stream on the recording's clock: by the publisher's last
        sender report when there is one for this SSRC (its RTP clock against our arrival time
        of the report: audio and video of one sender stay in step), else by this packet's
        arrival."""
        local = fp.arrival
        sr = self._report
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
    def _forget(self, ts: int) -> dict[int, LoggedPacket]:
        self._first.pop(ts, None)
        self._marked.discard(ts)
        return self._pending.pop(ts)

    def _assemble(self, now: float) -> None:
        pending = self._pending
        if len(pending) == 1 and not self._rescan and self._last_end is not None:
            # The usual: this frame alone, following the last one. What the scan below
            # would do with it, without scanning.
            [(ts, frame)] = pending.items()
            seqs = sorted(frame)
            if seqs[0] == self._last_end + 1 and frame[seqs[-1]].marker \
                    and seqs[-1] - seqs[0] + 1 == len(seqs):
                pending.clear()
                self._first.clear()
                self._marked.clear()
                self._last_end = seqs[-1]
                keyframe = frame[seqs[0]].keyframe
                if self._need_keyframe and not keyframe:
                    self.dropped_frames += 1
                    return
                self._rescan = True  # as below, should a bad payload raise
                payload = depacketize(self.codec, [frame[s].payload for s in seqs])
                self._need_keyframe = False
                self._write(payload, self._timestamp(ts), keyframe)
                self._rescan = False
                return
        self._rescan = True  # until the scan ends normally (a bad payload raises out of it)
        while True:
            complete = None
            for ts, frame in self._pending.items():
                seqs = sorted(frame)
                last = frame[seqs[-1]]
                if not last.marker or seqs[-1] - seqs[0] + 1 != len(seqs):
                    continue
                first = frame[seqs[0]]
                follows = self._last_end is not None and seqs[0] == self._last_end + 1
                if follows or frame_start(self.codec, first.payload):
                    complete = (ts, seqs, follows)
                    break
            if complete is None:
                break
            ts, seqs, follows = complete
            frame = self._forget(ts)
            # frames before this one that never completed are lost
            for other in [t for t, f in self._pending.items() if min(f) < seqs[0]]:
                self._forget(other)
                self._drop_frame()
            if not follows and self._last_end is not None:
                self._drop_frame()  # a whole frame went missing in between
            self._last_end = seqs[-1]
            keyframe = frame[seqs[0]].keyframe
            if self._need_keyframe and not keyframe:
                self.dropped_frames += 1
                continue
            payload = depacketize(self.codec, [frame[s].payload for s in seqs])
            self._need_keyframe = False
            self._write(payload, self._timestamp(ts), keyframe)
        self._rescan = False
        self._drop_stale(now)

    def _drop_stale(self, now: float) -> None:
        """Drop the frames whose first packet came over STALE_FRAME_S before `now`."""
        if not self._first or now - min(self._first.values()) <= STALE_FRAME_S:
            return  # the common case, decided by the lower bounds (_first) alone
        for ts in [t for t, f in self._pending.items()
                   if now - min(p.arrival for p in f.values()) > STALE_FRAME_S]:
            self._forget(ts)
            self._drop_frame()

    def _drop_frame(self) -> None:
        """A lost or broken frame: video waits for the next keyframe (which the SFU side
        asked for when it saw the gap: media/recorder.py)."""
        self.dropped_frames += 1
        if self.kind == "video":
            self._need_keyframe = True

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
        self.opened = True
        return True

    def _write(self, payload: bytes, pts: int, keyframe: bool) -> None:
        last = self._last_pts
        if last is not None and pts <= last:
            self.dropped_frames += 1  # reordered or repeated: the muxer needs rising times
            return
        try:
            if self._container is None and not self._open(payload):
                self.dropped_frames += 1
                return
            packet = av.Packet(payload)
            packet.pts = pts
            packet.dts = pts
            packet.time_base = self._time_base
            packet.is_keyframe = keyframe
            packet.stream = self._stream
            self._container.mux_one(packet)
        except (OSError, av.FFmpegError) as exc:
            raise WriteFailed(str(exc)) from exc
        self._last_pts = pts
        self.frames += 1

    def finish(self) -> None:
        self._close()

    def _close(self) -> None:
        if self._container is not None:
            container, self._container = self._container, None
            try:
                container.close()
            except Exception as exc:  # noqa: BLE001 - whatever it is, the track is over
                logger.error("recorder: closing %s: %s", self.path.name, exc)
                self.failed = self.failed or str(exc)
