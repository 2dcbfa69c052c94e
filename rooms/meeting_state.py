"""The states a meeting's procedure is truly in, beyond scheduled / open / closed
(rooms/meetings.py): paused (a recess: the item's clock stops, nothing new is started), and
reopened after it was closed by mistake. Each change is an audit entry.

A paused meeting is still `MeetingStatus.open` (the call goes on during a recess, and the
cascade keeps mirroring it); `ProcedureState.paused_at` says it is paused. Call under
`rooms.procedure.lock`.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from rooms import audit, floor
from rooms.errors import Conflict
from rooms.models import Meeting, MeetingStatus, utcnow
from rooms.procedure import require_open, seconds_between
from rooms.procedure_models import AgendaItem, ProcedureState, Vote, VoteStatus


class MeetingAudit:
    paused = "meeting_paused"
    resumed = "meeting_resumed"
    closed = "meeting_closed"
    reopened = "meeting_reopened"


def shown_status(meeting: Meeting, state: ProcedureState) -> str:
    """The status people see: scheduled, open, paused or closed."""
    if meeting.status == MeetingStatus.open and state.paused_at is not None:
        return "paused"
    return meeting.status.value


async def _stop_item_clock(session: AsyncSession, state: ProcedureState, now: datetime) -> None:
    """The current item stays current, its running stretch is added to its time."""
    if state.current_item_id is None or state.current_since is None:
        return
    item = await session.get(AgendaItem, state.current_item_id)
    if item is not None:
        item.spent_seconds += seconds_between(state.current_since, now)
        session.add(item)
    state.current_since = None
    session.add(state)


async def pause(session: AsyncSession, meeting: Meeting, state: ProcedureState,
                actor_id: int | None) -> None:
    require_open(meeting, state)
    now = utcnow()
    await _stop_item_clock(session, state, now)
    state.paused_at = now
    session.add(state)
    await audit.record(session, state.meeting_id, actor_id, MeetingAudit.paused, {})


async def resume(session: AsyncSession, meeting: Meeting, state: ProcedureState,
                 actor_id: int | None) -> None:
    require_open(meeting)
    if state.paused_at is None:
        raise Conflict("the meeting is not paused", code="bad_state")
    state.paused_at = None
    if state.current_item_id is not None:
        state.current_since = utcnow()  # the item's clock runs again
    session.add(state)
    await audit.record(session, state.meeting_id, actor_id, MeetingAudit.resumed, {})


async def close_out(session: AsyncSession, state: ProcedureState) -> list[Vote]:
    """A meeting just closed: the current item's clock stops (no item is current any more),
    the speaker's turn ends, and the votes still open are returned for the caller to close
    (it holds the ballot key). Run again (another process saw the same close), it finds
    nothing left to do."""
    now = utcnow()
    await _stop_item_clock(session, state, now)
    state.current_item_id = None
    if state.floor_request_id is not None:
        await floor.end_floor(session, state, now)
    state.paused_at = None
    session.add(state)
    rows = await session.exec(select(Vote).where(Vote.meeting_id == state.meeting_id,
                                                 Vote.status == VoteStatus.open))
    return list(rows.all())


async def reopen(session: AsyncSession, meeting: Meeting, state: ProcedureState,
                 actor_id: int | None) -> None:
    """Open a closed meeting again (closed by mistake, or a session resumed): audited with
    when it had been closed; its end time is cleared until it closes again."""
    if meeting.status != MeetingStatus.closed:
        raise Conflict("only a closed meeting is reopened", code="bad_state")
    closed_at = meeting.closed_at
    meeting.status, meeting.closed_at = MeetingStatus.open, None
    session.add(meeting)
    await audit.record(session, state.meeting_id, actor_id, MeetingAudit.reopened,
                       {"closed_at": closed_at.isoformat() if closed_at else None})
