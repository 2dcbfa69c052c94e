"""Changes the server makes by itself, with no person's request behind them: a vote whose
time limit ran out is closed, and a meeting that closed has its procedure closed out (the
current item's clock stops, the speaker's turn ends, a vote still open is closed).

Time limits: each process arms a timer for the open votes with a `closes_at` that it
opened or found at start-up; whichever process fires first closes the vote under the
meeting's lock, and the others find it closed and do nothing. Until it closes, the ballot
box refuses ballots past `closes_at` (rooms.votes.expired), so a late timer counts nothing
late.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp import web
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rooms import audit, meeting_state, procedure, votes
from rooms.audit import AuditKind
from rooms.models import Meeting, utcnow
from rooms.procedure_models import AuditEntry, Vote, VoteStatus
from server.core import keys
from server.meetings.events import MeetingClosed
from server.procedure.keys import LIVE
from server.procedure.views import Emit, agenda_emit, floor_emit, vote_emit

log = logging.getLogger(__name__)


async def close_by_server(app: web.Application, meeting_id: int, vote_ids: list[int] | None,
                          reason: str) -> None:
    """Close these open votes (None: those the meeting close leaves open, after closing out
    the procedure) without a person's request; audited with `reason` and no actor."""
    live = app[LIVE]
    emits: list[Emit] = []
    secret = False
    async with live.lock(meeting_id), app[keys.DB].session() as s:
        state = await procedure.lock(s, meeting_id)
        if vote_ids is None:
            had_floor = state.floor_request_id is not None
            open_votes = await meeting_state.close_out(s, state)
            meeting = await s.get(Meeting, meeting_id)
            closed_at = meeting.closed_at.isoformat() if meeting and meeting.closed_at else None
            # Every process hears a close (the Redis bus bridge): the first one records it.
            if not await _recorded(s, meeting_id, closed_at):
                await audit.record(s, meeting_id, None, meeting_state.MeetingAudit.closed,
                                   {"closed_at": closed_at})
            emits.append(await agenda_emit(s, state))
            if had_floor:
                emits.append(await floor_emit(s, state))
        else:
            rows = await s.exec(select(Vote).where(Vote.meeting_id == meeting_id,
                                                   col(Vote.id).in_(vote_ids),
                                                   Vote.status == VoteStatus.open))
            open_votes = list(rows.all())
        for vote in open_votes:
            assert vote.id is not None
            live.cancel_tally(vote.id)
            result = await votes.close_vote(s, vote, live.key)
            data: dict[str, Any] = {"vote_id": vote.id, "totals": result["totals"],
                                    "eligible": result["eligible"], "cast": result["cast"],
                                    "adopted": result["adopted"], "reason": reason}
            if vote.secret:
                data["voters"] = sorted(await votes.participants(s, vote))
                secret = True
            await audit.record(s, meeting_id, None, AuditKind.vote_closed, data)
            emits.append(await vote_emit(s, vote.id))
        seq = state.seq
    await live.emit(meeting_id, seq, emits)
    if secret:
        live.scrub_soon()


async def _recorded(s: AsyncSession, meeting_id: int, closed_at: str | None) -> bool:
    rows = await s.exec(select(AuditEntry.data_json).where(
        AuditEntry.meeting_id == meeting_id,
        AuditEntry.kind == meeting_state.MeetingAudit.closed).order_by(col(AuditEntry.seq).desc()))
    last = rows.first()
    return last is not None and json.loads(last).get("closed_at") == closed_at


@dataclass
class VoteTimers:
    """One sleeping task per open vote with a time limit, in this process."""

    app: web.Application
    _tasks: dict[int, asyncio.Task[None]] = field(default_factory=dict)

    def arm(self, meeting_id: int, vote_id: int, closes_at: datetime) -> None:
        if vote_id in self._tasks:
            return
        task = asyncio.create_task(self._fire(meeting_id, vote_id, closes_at))
        self._tasks[vote_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(vote_id, None))

    def cancel(self, vote_id: int) -> None:
        """The vote was closed by hand: its timer has nothing left to do."""
        task = self._tasks.pop(vote_id, None)
        if task is not None:
            task.cancel()

    async def _fire(self, meeting_id: int, vote_id: int, closes_at: datetime) -> None:
        await asyncio.sleep(max(0.0, (closes_at - utcnow()).total_seconds()))
        try:
            await close_by_server(self.app, meeting_id, [vote_id], "time_limit")
        except Exception:
            log.exception("closing vote %s at its time limit failed", vote_id)

    async def start(self) -> None:
        """Arm the timers of the votes left open with a time limit (a restart). Not a
        cascade mirror's: its owner closes them, and the close reaches it through the
        journal (server/cascade/topic/votes.py)."""
        async with self.app[keys.DB].session() as s:
            rows = await s.exec(select(Vote)
                                .join(Meeting, col(Meeting.id) == col(Vote.meeting_id))
                                .where(Vote.status == VoteStatus.open,
                                       col(Vote.closes_at).is_not(None),
                                       col(Meeting.cascade_key).is_(None)))
            for vote in rows.all():
                assert vote.id is not None and vote.closes_at is not None
                self.arm(vote.meeting_id, vote.id, vote.closes_at)

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def subscribe(app: web.Application) -> None:
    async def meeting_closed(event: MeetingClosed) -> None:
        await close_by_server(app, event.meeting_id, None, "meeting_closed")
    app[keys.BUS].subscribe(MeetingClosed, meeting_closed, relayed=True)  # each process's timers
