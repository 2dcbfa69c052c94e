"""The views the procedure pushes after a change (one per aspect: agenda, attendance, floor,
a vote) and the whole panel a member loads on joining (`snapshot`)."""

from __future__ import annotations

from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from rooms import agenda, attendance, floor, meeting_state, procedure, votes
from rooms.meetings import MeetingAccess
from rooms.models import utcnow
from rooms.permissions import MEETING_PERMISSIONS
from rooms.procedure_models import ProcedureState

Emit = tuple[str, dict[str, Any]]  # a socket.io event and its payload, pushed with the seq

async def agenda_emit(s: AsyncSession, state: ProcedureState) -> Emit:
    return "agenda:changed", {"agenda": await agenda.agenda_view(s, state)}


async def attendance_emit(s: AsyncSession, state: ProcedureState) -> Emit:
    return "attendance:changed", {"attendance": await attendance.attendance_view(s, state)}


async def floor_emit(s: AsyncSession, state: ProcedureState) -> Emit:
    view = await floor.floor_view(s, state)
    return "floor:changed", view


async def vote_emit(s: AsyncSession, vote_id: int) -> Emit:
    vote = await s.get(votes.Vote, vote_id)
    assert vote is not None
    return "vote:updated", {"vote": votes.vote_dict(vote, await votes.tally(s, vote))}


async def snapshot(s: AsyncSession, access: MeetingAccess) -> dict[str, Any]:
    """Everything the procedure panel shows, for one member; `seq` says how fresh it is."""
    meeting_id = access.meeting.id
    assert meeting_id is not None and access.user.id is not None
    state = await procedure.read_state(s, meeting_id)
    vote_list = []
    for vote in await votes.votes_of(s, meeting_id):
        vote_list.append(votes.vote_dict(vote, await votes.tally(s, vote)))
    mine = await attendance.status_of(s, meeting_id, access.user.id)
    voted = await votes.votes_cast_by(s, meeting_id, access.user.id)
    return {
        "meeting_id": meeting_id, "seq": state.seq,
        "status": meeting_state.shown_status(access.meeting, state),
        "rule_set": state.rule_set.value,
        "server_time": utcnow().isoformat(),
        "agenda": await agenda.agenda_view(s, state),
        "attendance": await attendance.attendance_view(s, state),
        "floor": await floor.floor_view(s, state), "votes": vote_list,
        "conclusions": state.conclusions,
        "me": {"user_id": access.user.id, "name": access.user.full_name,
               "role": access.role.value, "site_id": access.user.site_id,
               "attendance": mine.status.value if mine else None, "voted": voted,
               "actions": sorted(a.value for a in MEETING_PERMISSIONS[access.role])},
    }
