"""The procedure's spine: one lock and one sequence number per meeting.

Every procedural change starts with `lock(session, meeting_id)`: it bumps the meeting's
`ProcedureState.seq` with an UPDATE, which takes the row lock on PostgreSQL and the write
lock on SQLite (pysqlite begins the transaction at the first write). Changes of one meeting
therefore apply one at a time, and the seq they return orders the events sent to clients.
Lock order, to stay deadlock-free: procedurestate → the procedure's own rows → audithead.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from rooms.errors import Conflict, DomainError
from rooms.models import Meeting, MeetingStatus
from rooms.procedure_models import ProcedureState, QuorumRule, RuleSet

# The quorum each body's working rules set (shared/DOMAIN.md): councils and committees need
# two thirds of their members; other meetings have no quorum rule.
QUORUM_OF = {RuleSet.council: QuorumRule.two_thirds, RuleSet.committee: QuorumRule.two_thirds,
             RuleSet.other: QuorumRule.none}


class RateLimited(DomainError):
    code, status = "rate_limited", 429


def dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


async def insert_ignore(session: AsyncSession, table: type, **values: object) -> None:
    """INSERT … ON CONFLICT DO NOTHING, on SQLite and PostgreSQL."""
    make = pg_insert if dialect(session) == "postgresql" else sqlite_insert
    await session.exec(make(table).values(**values).on_conflict_do_nothing())  # type: ignore[call-overload]


# lock's statement, built once: it starts every procedural change and ballot batch, and at
# every cascade mirror every apply of the owner's floor.
_BUMP = (update(ProcedureState).where(col(ProcedureState.meeting_id) == bindparam("b_meeting_id"))
         .values(seq=ProcedureState.seq + 1).returning(ProcedureState)
         .execution_options(populate_existing=True, synchronize_session=False))


async def lock(session: AsyncSession, meeting_id: int) -> ProcedureState:
    """Serialise with every other procedural change of this meeting; returns the state with
    its new seq. Held until the session's transaction ends. One statement once the meeting's
    state row exists (UPDATE … RETURNING: every ballot batch starts here)."""
    params = {"b_meeting_id": meeting_id}
    state = (await session.exec(_BUMP, params=params)).scalars().first()  # type: ignore[call-overload]
    if state is None:
        await insert_ignore(session, ProcedureState, meeting_id=meeting_id, seq=0,
                            roll_call_open=False, quorum_rule=QuorumRule.majority,
                            rule_set=RuleSet.other, conclusions="")
        state = (await session.exec(_BUMP, params=params)).scalars().one()  # type: ignore[call-overload]
    assert isinstance(state, ProcedureState)
    return state


async def read_state(session: AsyncSession, meeting_id: int) -> ProcedureState:
    """The state without locking (for reads); a fresh default if nothing happened yet."""
    state = await session.get(ProcedureState, meeting_id)
    return state if state is not None else ProcedureState(meeting_id=meeting_id)


def require_open(meeting: Meeting, state: ProcedureState | None = None) -> None:
    """Live procedure (check-in, the floor, votes) needs the meeting open and not paused;
    the refusal says which: a stale tab acting on an ended meeting is told it has ended."""
    require_not_closed(meeting)
    if meeting.status != MeetingStatus.open:
        raise Conflict("the meeting has not been opened yet", code="meeting_not_open")
    if state is not None and state.paused_at is not None:
        raise Conflict("the meeting is paused", code="meeting_paused")


def require_not_closed(meeting: Meeting) -> None:
    if meeting.status == MeetingStatus.closed:
        raise Conflict("the meeting has ended", code="meeting_closed")


def seconds_between(start: datetime | None, end: datetime) -> int:
    return max(0, int((end - start).total_seconds())) if start is not None else 0


async def set_rule_set(session: AsyncSession, meeting_id: int, rule_set: RuleSet) -> ProcedureState:
    """The body whose working rules the meeting follows, and the quorum they set; chosen when
    the meeting is scheduled (changeable in its settings until it closes)."""
    state = await lock(session, meeting_id)
    state.rule_set = rule_set
    state.quorum_rule = QUORUM_OF[rule_set]
    session.add(state)
    return state
