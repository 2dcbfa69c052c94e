"""Recording as a feature: the chair's start/stop events over the conference's SFU; a closed
meeting or a stopping server stops its recording (files closed, audited)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from rooms import audit
from server.conference.keys import MEDIA
from server.core import keys
from server.core.feature import Feature
from server.core.realtime import Realtime, meeting_room
from server.meetings.events import MeetingClosed
from server.recording import routes, sockets
from server.recording.keys import RECORDINGS, TIMELINE
from server.recording.live import Recordings
from server.recording.timeline import Timeline

logger = logging.getLogger(__name__)


async def stop_and_audit(app: web.Application, meeting_id: int) -> None:
    """Stop without a chair's request (meeting closed, server stopping): audited as the
    system's (actor none)."""
    recordings = app[RECORDINGS]
    running = recordings.active.get(meeting_id)
    offset = running.offset_ms() if running is not None else 0
    stopped = await recordings.stop(meeting_id)
    if stopped is None:
        return
    rec, files = stopped
    try:
        data = sockets.stopped_data(rec.directory.name, files)
        async with app[keys.DB].session() as s:
            await audit.record(s, meeting_id, None, sockets.STOPPED, data)
        await app[TIMELINE].stopped(rec, offset, data["files"])
        await app[keys.SIO].emit("recording:state", recordings.state(meeting_id),
                                 room=meeting_room(meeting_id))
    except Exception:  # the files are closed; only the record of it failed
        logger.exception("recording of meeting %s stopped but not audited", meeting_id)


def setup(app: web.Application, realtime: Realtime) -> None:
    settings = app[keys.SETTINGS]
    app[RECORDINGS] = Recordings(app[MEDIA].sfu, settings.data_dir / "recordings")
    app[TIMELINE] = timeline = Timeline(app)
    app[RECORDINGS].on_tracks = timeline.on_tracks
    timeline.subscribe()
    sockets.register(realtime)
    routes.register(app)

    async def meeting_closed(event: MeetingClosed) -> None:
        await stop_and_audit(app, event.meeting_id)
    app[keys.BUS].subscribe(MeetingClosed, meeting_closed, relayed=True)  # where it is recorded


async def lifespan(app: web.Application) -> AsyncIterator[None]:
    yield
    for meeting_id in list(app[RECORDINGS].active):  # before the SFU closes (listed after it)
        await stop_and_audit(app, meeting_id)
    await app[RECORDINGS].close()
    await app[TIMELINE].close()


FEATURE = Feature("recording", setup, needs=(MEDIA,), provides=(RECORDINGS, TIMELINE), lifespan=lifespan)
