"""One closed vote's result as a record of its own (a signed "kết quả biểu quyết"), read the
same way the minutes read every vote, so the two never disagree."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel.ext.asyncio.session import AsyncSession

from rooms import minutes, votes
from rooms.errors import Conflict
from rooms.minutes_data import VoteResult
from rooms.models import Meeting, MeetingRole, Unit, utcnow
from rooms.procedure_models import VoteStatus


@dataclass(frozen=True)
class VoteRecord:
    meeting_title: str
    unit: str
    place_name: str
    chair: str
    result: VoteResult
    issued_on_iso: str  # the local date the record was made


async def vote_record(session: AsyncSession, meeting_id: int, vote_id: int) -> VoteRecord:
    vote = await votes.get_vote(session, meeting_id, vote_id)
    if vote.status != VoteStatus.closed:
        raise Conflict("the vote is still open: its result can be signed once it is closed",
                       code="vote_open")
    closed = [v.id for v in await votes.votes_of(session, meeting_id)
              if v.status == VoteStatus.closed]
    # minutes' reading of every closed vote, in the same order (one query path for both)
    result = (await minutes._votes(session, meeting_id))[closed.index(vote.id)]
    meeting = await session.get(Meeting, meeting_id)
    assert meeting is not None  # get_vote found its vote
    unit = await session.get(Unit, meeting.unit_id)
    chair = await minutes._person(session, meeting_id, MeetingRole.chair)
    unit_name = unit.name if unit else ""
    return VoteRecord(meeting.title, unit_name, minutes.place_name(unit_name), chair.name, result,
                      minutes.local(utcnow()).date().isoformat())
