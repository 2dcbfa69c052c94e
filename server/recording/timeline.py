"""The timeline beside a recording's tracks (issue 16, item 2), written at the owner node as
things happen, from the bus events the features already publish and the live state:

- floor: `FloorChanged`; votes: `VoteUpdated` (its opening, and its result when it closes;
  tally pushes in between are not noted); the presented page: `PresenterMoved` (a new
  document, version or page; zoom and scroll are not noted); the current agenda item:
  `AgendaChanged` (noted when the current item differs from the last noted); chat:
  `ChatPosted` (messages to everyone); the tracks: `Recordings.on_tracks`.
- at the start, the state at that moment (current item, floor, open votes, presentation),
  so a replay from any point knows what was on screen.

Each entry's offset is taken when the event is handled, on the files' clock
(`MeetingRecording.offset_ms`), and written in its own commit (rooms/recording_log.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import timedelta
from typing import Any

from aiohttp import web
from sqlmodel import col, select

from documents.db_models import Document, Presentation
from rooms import floor, recording_log
from rooms.models import utcnow
from rooms.procedure_models import AgendaItem, ProcedureState, Vote, VoteStatus
from rooms.recording_log import Kind
from server.chat.events import ChatPosted
from server.core import keys
from server.documents.events import PresenterMoved
from server.procedure.events import AgendaChanged, FloorChanged, VoteUpdated
from server.recording.keys import RECORDINGS
from server.recording.live import MeetingRecording

logger = logging.getLogger(__name__)

READY_TIMEOUT_S = 10.0  # a note waits this long for its recording's row (start in progress)


class Timeline:
    def __init__(self, app: web.Application) -> None:
        self.app = app
        self._tasks: set[asyncio.Task[None]] = set()

    def _active(self, meeting_id: int) -> MeetingRecording | None:
        return self.app[RECORDINGS].active.get(meeting_id)

    async def note(self, rec: MeetingRecording, kind: str, data: dict[str, Any],
                   offset_ms: int | None = None) -> None:
        """Write one entry, its time taken now (or given), once the recording's row exists."""
        offset = rec.offset_ms() if offset_ms is None else offset_ms
        # The wall time from the same clock: the start's UTC plus the monotonic offset (an NTP
        # step during the meeting moves neither).
        at = rec.started_at + timedelta(milliseconds=offset)
        if rec.recording_id is None:
            try:
                await asyncio.wait_for(rec.ready.wait(), READY_TIMEOUT_S)
            except TimeoutError:
                logger.warning("timeline: recording of meeting %s never written; %s dropped",
                               rec.meeting_id, kind)
                return
        assert rec.recording_id is not None
        async with self.app[keys.DB].session() as s:
            await recording_log.add(s, rec.recording_id, at, offset, kind, data)

    def note_soon(self, rec: MeetingRecording, kind: str, data: dict[str, Any]) -> None:
        """From a synchronous caller (the SFU's listeners): the time is taken now."""
        task = asyncio.create_task(self.note(rec, kind, data, rec.offset_ms()))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("timeline: writing an entry failed", exc_info=task.exception())

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- the start: what is on screen at that moment -------------------------------------
    async def started(self, rec: MeetingRecording) -> None:
        """After the recording's row is written: its first entries, at time zero (the state
        is read a moment later; a change in between is noted by its own event too)."""
        offset = 0
        await self.note(rec, Kind.started, {}, offset)
        async with self.app[keys.DB].session() as s:
            state = await s.get(ProcedureState, rec.meeting_id)
            open_votes = (await s.exec(select(Vote).where(
                Vote.meeting_id == rec.meeting_id, Vote.status == VoteStatus.open)
                .order_by(col(Vote.id)))).all()
            presentation = (await s.exec(select(Presentation).where(
                Presentation.meeting_id == rec.meeting_id))).first()
            holder = None
            if state is not None and state.floor_request_id is not None:
                holder = (await floor.floor_view(s, state))["holder"]
        # What is not there at the start is not noted (nothing current, nobody, no page).
        rec.noted["agenda"], rec.noted["presented"] = None, None
        await self._agenda(rec, state.current_item_id if state is not None else None, offset)
        rec.noted["floor"] = None  # nobody, unless noted just below
        if holder is not None:
            await self._floor(rec, holder.get("user_id"), holder.get("name"),
                              holder.get("site"), offset)
        for vote in open_votes:
            rec.noted[f"vote_opened:{vote.id}"] = True
            await self.note(rec, Kind.vote_opened,
                            {"vote_id": vote.id, "question": vote.question}, offset)
        if presentation is not None and presentation.active:
            await self._presented(rec, {"active": True, "document_id": presentation.document_id,
                                        "version": presentation.version,
                                        "page": presentation.page}, offset)

    async def stopped(self, rec: MeetingRecording, offset: int,
                      files: list[dict[str, Any]]) -> None:
        """After its files are closed: the last entry, and the row's end."""
        await self.note(rec, Kind.stopped, {"files": files}, offset)
        if rec.recording_id is not None:
            async with self.app[keys.DB].session() as s:
                await recording_log.close_recording(s, rec.recording_id, utcnow())

    def on_tracks(self, rec: MeetingRecording, tracks: list[dict[str, Any]]) -> None:
        for track in tracks:
            self.note_soon(rec, Kind.track, track)

    # -- what happens --------------------------------------------------------------------
    async def _agenda(self, rec: MeetingRecording, item_id: int | None,
                      offset: int | None = None) -> None:
        if "agenda" in rec.noted and rec.noted["agenda"] == item_id:
            return
        rec.noted["agenda"] = item_id
        title = None
        if item_id is not None:
            async with self.app[keys.DB].session() as s:
                item = await s.get(AgendaItem, item_id)
                title = item.title if item is not None else None
        await self.note(rec, Kind.agenda, {"item_id": item_id, "title": title}, offset)

    async def _floor(self, rec: MeetingRecording, user_id: int | None, name: str | None,
                     site: str | None, offset: int | None = None) -> None:
        if "floor" in rec.noted and rec.noted["floor"] == user_id:
            return  # the queue changed, not the holder
        rec.noted["floor"] = user_id
        await self.note(rec, Kind.floor, {"user_id": user_id, "name": name, "site": site},
                        offset)

    async def _presented(self, rec: MeetingRecording, state: dict[str, Any],
                         offset: int | None = None) -> None:
        shown = ((state.get("document_id"), state.get("version"), state.get("page"))
                 if state.get("active") else None)
        if "presented" in rec.noted and rec.noted["presented"] == shown:
            return  # a zoom or scroll on the same page
        rec.noted["presented"] = shown
        if shown is None:
            await self.note(rec, Kind.presented, {"active": False, "document_id": None,
                                                  "version": None, "page": None}, offset)
            return
        await self.note(rec, Kind.presented, {"active": True, "document_id": shown[0],
                                              "version": shown[1], "page": shown[2]}, offset)

    async def agenda_changed(self, event: AgendaChanged) -> None:
        rec = self._active(event.meeting_id)
        if rec is None:
            return
        offset = rec.offset_ms()
        async with self.app[keys.DB].session() as s:
            state = await s.get(ProcedureState, event.meeting_id)
        await self._agenda(rec, state.current_item_id if state is not None else None, offset)

    async def floor_changed(self, event: FloorChanged) -> None:
        rec = self._active(event.meeting_id)
        if rec is not None:
            await self._floor(rec, event.speaking, event.name, event.site)

    async def vote_updated(self, event: VoteUpdated) -> None:
        rec = self._active(event.meeting_id)
        if rec is None:
            return
        key = f"vote_{event.status}:{event.vote_id}"
        if key in rec.noted:
            return  # a live tally push of a vote already noted
        rec.noted[key] = True
        offset = rec.offset_ms()
        async with self.app[keys.DB].session() as s:
            vote = await s.get(Vote, event.vote_id)
        if vote is None:
            return
        data: dict[str, Any] = {"vote_id": vote.id, "question": vote.question}
        if event.status == "closed":
            result = json.loads(vote.result_json) if vote.result_json else {}
            data["options"] = json.loads(vote.options_json)
            data["result"] = {k: result.get(k) for k in ("totals", "adopted", "outcome",
                                                          "cast", "elected")}
            await self.note(rec, Kind.vote_closed, data, offset)
        else:
            await self.note(rec, Kind.vote_opened, data, offset)

    async def presenter_moved(self, event: PresenterMoved) -> None:
        rec = self._active(event.meeting_id)
        if rec is not None:
            await self._presented(rec, event.state)

    async def chat_posted(self, event: ChatPosted) -> None:
        rec = self._active(event.meeting_id)
        if rec is not None:
            await self.note(rec, Kind.chat, {"message_id": event.message_id,
                                             "sender_name": event.sender_name,
                                             "text": event.text})

    def subscribe(self) -> None:
        bus = self.app[keys.BUS]
        # Relayed too: with several processes the change may be made through another one
        # than the process recording the meeting (server/core/bus_bridge.py).
        bus.subscribe(AgendaChanged, self.agenda_changed, relayed=True)
        bus.subscribe(FloorChanged, self.floor_changed, relayed=True)
        bus.subscribe(VoteUpdated, self.vote_updated, relayed=True)
        bus.subscribe(PresenterMoved, self.presenter_moved, relayed=True)
        bus.subscribe(ChatPosted, self.chat_posted, relayed=True)


async def document_titles(app: web.Application, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    async with app[keys.DB].session() as s:
        rows = (await s.exec(select(Document.id, Document.title)
                             .where(col(Document.id).in_(ids)))).all()
    return {i: t for i, t in rows if i is not None}
