"""Wires the cascade (server/cascade/link.py, media/link.py) into the app on a node that
has HOPSO_NODE_UNIT set: the ``/node`` socket.io namespace for child nodes, the link to
the parent, meetings mirrored from the parent (server/cascade/meetings.py), and the media
hub's rooms as `CascadedRoom`s (server/cascade/room.py). Without HOPSO_NODE_UNIT nothing
here runs (the embedded default: one node hosts the whole tree).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from media import SFU, Cascade
from rooms import meeting_state, meetings, procedure
from rooms.db import Database
from rooms.errors import NotFound
from rooms.models import Meeting
from server.cascade import topic
from server.cascade.credentials import CREDENTIALS_REFRESH_S, load_credentials
from server.cascade.keys import NODE, STATE
from server.cascade.link import NodeCascade
from server.cascade.meetings import DbDirectory, reopen_mirror
from server.cascade.room import CascadedRoom
from server.cascade.state import MeetingState
from server.conference.keys import MEDIA
from server.conference.outbox import Outbox
from server.core import keys
from server.meetings.events import MeetingClosed
from server.procedure.keys import LIVE
from server.procedure.views import agenda_emit, attendance_emit

log = logging.getLogger(__name__)


def setup(app: web.Application) -> None:
    """Needs the conference's hub (its SFU carries the links) and the procedure's live state
    (server/cascade/feature.py says so)."""
    settings = app[keys.SETTINGS]
    if settings.node is None:
        return
    db, hub = app[keys.DB], app[MEDIA]

    async def push_attendance(meeting_id: int) -> None:
        """A child's headcount changed: the quorum here did too."""
        live = app[LIVE]
        async with live.lock(meeting_id), db.session() as s:
            state = await procedure.lock(s, meeting_id)
            emit, seq = await attendance_emit(s, state), state.seq
        await live.emit(meeting_id, seq, [emit])

    async def mirror_closed(meeting_id: int) -> None:
        """The parent closed a meeting mirrored here: as if closed here."""
        await app[keys.BUS].publish(MeetingClosed(meeting_id))

    async def mirror_reopened(meeting_id: int, key: str, count: int) -> None:
        """The owner reopened a meeting mirrored (and closed) here: reopened here, its
        people told as for a reopen here (`meeting:updated`)."""
        live = app[LIVE]
        async with live.lock(meeting_id), db.session() as s:
            state = await procedure.lock(s, meeting_id)
            meeting = await s.get(Meeting, meeting_id)
            if meeting is None or not await reopen_mirror(s, meeting, key, count):
                return
            shown = {**meetings.meeting_dict(meeting),
                     "status": meeting_state.shown_status(meeting, state)}
            emits = [("meeting:updated", shown), await agenda_emit(s, state)]
            seq = state.seq
            await s.commit()
        await live.emit(meeting_id, seq, emits)

    directory = DbDirectory(db, settings.node.unit, push_attendance, on_closed=mirror_closed,
                            on_reopened=mirror_reopened)
    node = NodeCascade(settings.node, hub.sfu, directory=directory)
    node.attach(app[keys.SIO])
    node.journal_in_memory = settings.redis_url is None  # one process: it has every entry
    app[NODE] = node
    node.state = app[STATE] = MeetingState(db, settings.node.unit, node.push_journal,
                                           node.reachable)
    topic.install(app, node.state)

    async def open_cascade(meeting_id: int) -> Cascade:
        async with db.session() as s:
            meeting = await s.get(Meeting, meeting_id)
        if meeting is None:
            raise NotFound(f"meeting {meeting_id} not found")
        return node.open(directory.key_of(meeting), str(meeting_id))

    def room(meeting_id: int, sfu: SFU, outbox: Outbox) -> CascadedRoom:
        return CascadedRoom(meeting_id, sfu, outbox, open_cascade)
    hub.use_rooms(room)


async def lifespan(app: web.Application) -> AsyncIterator[None]:
    """Opened after the conference's (the SFU runs), closed before it."""
    node, db = app.get(NODE), app[keys.DB]
    if node is None:  # not a cascade node
        yield
        return
    await load_credentials(db, node)  # stored rotations/revocations win over env
    if node.state is not None:  # entries stored but not applied before a crash
        await node.state.journal.apply_pending()
    node.start_parent_link()
    refresher = asyncio.create_task(_refresh_credentials(db, node), name="node-credentials")
    yield
    refresher.cancel()
    await asyncio.gather(refresher, return_exceptions=True)
    await node.close()
    if node.state is not None:
        await node.state.journal.close()


async def _refresh_credentials(db: Database, node: NodeCascade) -> None:
    """Another process of this node may rotate or revoke a child's credential."""
    while True:
        await asyncio.sleep(CREDENTIALS_REFRESH_S)
        try:
            await load_credentials(db, node)
        except Exception:
            log.exception("cascade: reading stored child credentials failed")
