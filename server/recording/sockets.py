"""socket.io events of recording: the chair starts and stops it, everyone is told
(docs/protocol.md, "Recording")."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from rooms import audit, meetings, recording_log
from rooms.errors import Conflict, DomainError
from rooms.models import MeetingStatus
from rooms.permissions import Action
from server.core import keys
from server.core.realtime import EventContext, EventSchema, Realtime, meeting_room
from server.recording.keys import RECORDINGS, TIMELINE

logger = logging.getLogger(__name__)

STARTED, STOPPED = "recording_started", "recording_stopped"  # audit kinds


class MeetingRef(EventSchema):
    meeting_id: int


class RecordingUnavailable(DomainError):
    code, status = "recording_unavailable", 503


def disk_floor(root: Path, min_free_mb: int) -> None:
    """Refuse to start below the configured free disk space (docs/operations.md,
    "Retention"): a recording that fills the disk would stop part-way anyway."""
    place = root
    while not place.exists() and place != place.parent:
        place = place.parent
    free_mb = shutil.disk_usage(place).free // 2**20
    if free_mb < min_free_mb:
        logger.warning("recording refused: %s MB free, the floor is %s MB", free_mb, min_free_mb)
        raise RecordingUnavailable(
            f"Không đủ dung lượng đĩa để ghi hình: còn {free_mb} MB, cần ít nhất "
            f"{min_free_mb} MB. / Not enough free disk space to record: {free_mb} MB free, "
            f"at least {min_free_mb} MB needed.", code="disk_low")


def stopped_data(rec_dir: str, files: list[Any]) -> dict[str, Any]:
    return {"directory": rec_dir,
            "files": [{"name": f.path.rsplit("/", 1)[-1], "kind": f.kind, "codec": f.codec,
                       "frames": f.frames, "dropped_packets": f.dropped_packets,
                       "dropped_frames": f.dropped_frames, "failed": f.failed}
                      for f in files]}


def register(rt: Realtime) -> None:
    @rt.on("recording:start", MeetingRef)
    async def start(ctx: EventContext, p: MeetingRef) -> dict[str, Any]:
        recordings = ctx.app[RECORDINGS]
        async with ctx.db.session() as s:
            # Recording is a chair's media control (chair_media: the chair's alone).
            access = await meetings.require(s, ctx.user, p.meeting_id, Action.chair_media)
            if access.meeting.status != MeetingStatus.open:
                raise Conflict("the meeting is not open", "meeting_not_open")
            if access.meeting.cascade_key is not None:  # a mirror: the owner node records
                raise Conflict("this meeting is recorded at the node that holds it",
                               "not_owner_node")
            if p.meeting_id not in recordings.active:
                disk_floor(recordings.root, ctx.app[keys.SETTINGS].recording_min_free_mb)
            try:
                rec, started = recordings.start(p.meeting_id)
            except OSError as exc:
                logger.error("recording meeting %s: %s", p.meeting_id, exc)
                raise RecordingUnavailable("cannot write the recording") from None
            if not started:
                return rec.state()  # idempotent: already recording, nothing new audited
            try:
                await audit.record(s, p.meeting_id, ctx.user.id, STARTED,
                                   {"directory": rec.directory.name})
                row = await recording_log.open_recording(s, p.meeting_id, rec.directory.name,
                                                         rec.started_at, ctx.user.id)
            except BaseException:
                await recordings.stop(p.meeting_id)  # never a recording without its entry
                raise
        rec.recording_id = row.id
        rec.ready.set()
        await ctx.app[TIMELINE].started(rec)
        state = rec.state()
        await ctx.sio.emit("recording:state", state, room=meeting_room(p.meeting_id))
        return state

    @rt.on("recording:stop", MeetingRef)
    async def stop(ctx: EventContext, p: MeetingRef) -> dict[str, Any]:
        recordings = ctx.app[RECORDINGS]
        async with ctx.db.session() as s:
            await meetings.require(s, ctx.user, p.meeting_id, Action.chair_media)
            running = recordings.active.get(p.meeting_id)
            offset = running.offset_ms() if running is not None else 0
            stopped = await recordings.stop(p.meeting_id)
            if stopped is None:
                raise Conflict("the meeting is not being recorded", "not_recording")
            rec, files = stopped
            await audit.record(s, p.meeting_id, ctx.user.id, STOPPED,
                               stopped_data(rec.directory.name, files))
        await ctx.app[TIMELINE].stopped(rec, offset,
                                        stopped_data(rec.directory.name, files)["files"])
        state = recordings.state(p.meeting_id)
        await ctx.sio.emit("recording:state", state, room=meeting_room(p.meeting_id))
        return {**state, "files": stopped_data(rec.directory.name, files)["files"]}

    @rt.on("recording:status", MeetingRef)
    async def status(ctx: EventContext, p: MeetingRef) -> dict[str, Any]:
        async with ctx.db.session() as s:
            await meetings.require(s, ctx.user, p.meeting_id, Action.view)
        return ctx.app[RECORDINGS].state(p.meeting_id)
