"""Which meetings are being recorded here, and their recorders.

A meeting's router comes and goes within the meeting (created by the first join, freed when
the last peer leaves: server/conference/room.py), so a recording is kept per meeting and a
`media.Recorder` is attached to each router the meeting has while it runs, all sharing one
time zero. Files go to `<data dir>/recordings/<meeting id>/<start, UTC>/`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from media import SFU, MediaEvent, NotFoundError, ProducerAdded, Recorder, TrackFile

logger = logging.getLogger(__name__)


@dataclass
class MeetingRecording:
    meeting_id: int
    directory: Path
    started_at: datetime
    zero: float  # time.monotonic() at the start: time 0 in every file
    recorders: list[Recorder] = field(default_factory=list)
    recording_id: int | None = None  # its rooms.recording_log.Recording row, once written
    ready: asyncio.Event = field(default_factory=asyncio.Event)  # set with recording_id
    files: set[str] = field(default_factory=set)  # the track files announced to on_tracks
    noted: dict[str, object] = field(default_factory=dict)  # the timeline's last values

    def offset_ms(self, moment: float | None = None) -> int:
        """Milliseconds on the files' clock (time.monotonic() since `zero`)."""
        return round(((time.monotonic() if moment is None else moment) - self.zero) * 1000)

    def state(self) -> dict[str, Any]:
        return {"meeting_id": self.meeting_id, "recording": True,
                "started_at": self.started_at.isoformat().replace("+00:00", "Z")}


def not_recording(meeting_id: int) -> dict[str, Any]:
    return {"meeting_id": meeting_id, "recording": False, "started_at": None}


class Recordings:
    """Per app: the meetings recorded by this process. Runs on the event loop."""

    def __init__(self, sfu: SFU, root: Path) -> None:
        self.sfu = sfu
        self.root = root
        self.active: dict[int, MeetingRecording] = {}
        # Told of the files a recording began (file name, kind, source, producer, peer and
        # the peer's app data: whose it is), on the loop; the timeline sets it.
        self.on_tracks: Callable[[MeetingRecording, list[dict[str, Any]]], None] | None = None
        self._remove_listener = sfu.add_listener(self._on_event)

    def state(self, meeting_id: int) -> dict[str, Any]:
        rec = self.active.get(meeting_id)
        return rec.state() if rec is not None else not_recording(meeting_id)

    def start(self, meeting_id: int) -> tuple[MeetingRecording, bool]:
        """The meeting's recording, and whether this call started it (False: it was running).
        OSError if its directory cannot be made."""
        rec = self.active.get(meeting_id)
        if rec is not None:
            return rec, False
        now = datetime.now(UTC)
        directory = self.root / str(meeting_id) / now.strftime("%Y%m%dT%H%M%SZ")
        directory.mkdir(parents=True, exist_ok=True)
        rec = self.active[meeting_id] = MeetingRecording(meeting_id, directory, now,
                                                         time.monotonic())
        self._attach(rec)
        return rec, True

    async def stop(self, meeting_id: int) -> tuple[MeetingRecording, list[TrackFile]] | None:
        """Stop and close its files; None if it was not recording."""
        rec = self.active.pop(meeting_id, None)  # first: a second stop finds nothing
        if rec is None:
            return None
        files: list[TrackFile] = []
        for recorder in rec.recorders:
            files += await recorder.stop()
        return rec, files

    async def close(self) -> None:
        self._remove_listener()
        for meeting_id in list(self.active):
            await self.stop(meeting_id)

    def _attach(self, rec: MeetingRecording) -> None:
        """A recorder on the meeting's current router, if it has one not recorded yet."""
        try:
            router = self.sfu.get_router(str(rec.meeting_id))
        except NotFoundError:
            return  # nobody in the call yet: the first producer brings its router
        if any(r.router is router for r in rec.recorders):
            return
        recorder = Recorder(router, rec.directory, zero=rec.zero)
        recorder.start()
        rec.recorders.append(recorder)
        self.scan_tracks(rec)

    def scan_tracks(self, rec: MeetingRecording) -> None:
        """Announce the files begun since the last scan (after the recorders attached)."""
        new: list[dict[str, Any]] = []
        for recorder in rec.recorders:
            for track in recorder.stats()["tracks"]:
                name = Path(track["path"]).name
                if name in rec.files:
                    continue
                rec.files.add(name)
                try:
                    app_data = recorder.router.peer(track["peer_id"]).app_data
                except NotFoundError:
                    app_data = {}
                new.append({"file": name, "kind": track["kind"], "source": track["source"],
                            "codec": track["codec"], "producer_id": track["producer_id"],
                            "peer_id": track["peer_id"], "user_id": app_data.get("user_id"),
                            "name": app_data.get("name"), "site": app_data.get("site")})
        if new and self.on_tracks is not None:
            self.on_tracks(rec, new)

    def _on_event(self, event: MediaEvent) -> None:
        if isinstance(event, ProducerAdded):
            try:
                rec = self.active.get(int(event.router_id))
            except ValueError:
                return
            if rec is not None:
                self._attach(rec)
                # the router's recorder attaches the producer in its own listener: look after
                asyncio.get_running_loop().call_soon(self._scan_if_active, rec)

    def _scan_if_active(self, rec: MeetingRecording) -> None:
        if self.active.get(rec.meeting_id) is rec:
            self.scan_tracks(rec)
