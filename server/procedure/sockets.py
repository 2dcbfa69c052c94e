"""socket.io events of the meeting procedure: one schema and one small handler per event.

Every change goes through `run_change` (access check, meeting lock, audit entry, commit,
then a seq-stamped push to the meeting room). docs/protocol.md (Meeting procedure) lists payloads and acks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Literal

from pydantic import Field
from sqlmodel.ext.asyncio.session import AsyncSession

from rooms import agenda, attendance, audit, floor, meetings, votes
from rooms.audit import AuditKind
from rooms.errors import Conflict
from rooms.meetings import MeetingAccess
from rooms.permissions import Action
from rooms.procedure_models import (
    AttendanceStatus,
    ProcedureState,
    Threshold,
    VoteBase,
    VoteKind,
)
from server.core import keys
from server.core.realtime import EventContext, EventSchema, Realtime
from server.procedure.events import BallotsCast
from server.procedure.keys import LIVE, VOTE_TIMERS
from server.procedure.live import Change, cast_ballot, run_change
from server.procedure.views import (
    Emit,
    agenda_emit,
    attendance_emit,
    floor_emit,
    snapshot,
    vote_emit,
)

Result = tuple[dict[str, Any], list[Emit]]


class ProcedureRef(EventSchema):
    meeting_id: int


class SetCurrent(EventSchema):
    meeting_id: int
    item_id: int | None


class CheckIn(EventSchema):
    meeting_id: int
    mode: Literal["in_person", "online"]


class RecordAttendance(EventSchema):
    meeting_id: int
    user_id: int
    status: AttendanceStatus
    reason: str = Field(default="", max_length=500)


class RollCallAnswer(EventSchema):
    meeting_id: int
    site_id: int
    present: bool = True
    headcount: int = Field(ge=0, le=attendance.MAX_HEADCOUNT)


class FloorAsk(EventSchema):
    meeting_id: int
    for_site: bool = False


class FloorRef(EventSchema):
    meeting_id: int
    request_id: int


class FloorGrant(EventSchema):
    meeting_id: int
    request_id: int
    limit_seconds: int | None = Field(default=None, ge=1, le=floor.MAX_LIMIT_SECONDS)


class VoteOpen(EventSchema):
    meeting_id: int
    agenda_item_id: int
    question: str = Field(min_length=1, max_length=500)
    secret: bool = False
    allow_change: bool = False
    options: list[str] | None = Field(default=None, min_length=2, max_length=votes.MAX_OPTIONS)
    kind: VoteKind = VoteKind.motion
    base: VoteBase | None = None  # None: the meeting's rule set decides
    threshold: Threshold | None = None
    # its lower bound is the settings' (vote_time_limit_min_s), checked by votes.open_vote
    time_limit_seconds: int | None = Field(default=None, ge=1, le=votes.MAX_TIME_LIMIT_S)


class VoteCast(EventSchema):
    meeting_id: int
    vote_id: int
    option: int = Field(ge=0, lt=votes.MAX_OPTIONS)
    seq: int = Field(ge=1, le=2**31 - 1)  # the voter's own counter for this vote
    receipt: str | None = Field(default=None, max_length=64)


class VoteRef(EventSchema):
    meeting_id: int
    vote_id: int


class SiteCounts(EventSchema):
    meeting_id: int
    vote_id: int
    site_id: int
    counts: list[int] = Field(max_length=votes.MAX_OPTIONS)


def register(rt: Realtime) -> None:
    """The procedure's events; they read app[LIVE] (server/procedure/feature.py sets it)."""
    _register_state(rt)
    _register_attendance(rt)
    _register_floor(rt)
    _register_votes(rt)


def _uid(access: MeetingAccess) -> int:
    assert access.user.id is not None
    return access.user.id


async def _ack(ctx: EventContext, meeting_id: int, action: Action,
               change: Change[dict[str, Any]]) -> dict[str, Any]:
    """Run one change through `run_change`; the event's ack is its result."""
    return (await run_change(ctx.app, ctx.user, meeting_id, action, change))[0]


def _register_state(rt: Realtime) -> None:
    @rt.on("procedure:state", ProcedureRef)
    async def state(ctx: EventContext, p: ProcedureRef) -> dict[str, Any]:
        async with ctx.db.session() as s:
            access = await meetings.require(s, ctx.user, p.meeting_id, Action.view)
            return await snapshot(s, access)

    @rt.on("agenda:set_current", SetCurrent)
    async def set_current(ctx: EventContext, p: SetCurrent) -> dict[str, Any]:
        async def change(s: AsyncSession, a: MeetingAccess, st: ProcedureState) -> Result:
            await agenda.set_current(s, st, p.item_id)
            await audit.record(s, p.meeting_id, _uid(a), AuditKind.current_item,
                               {"item_id": p.item_id})
            return {"current_item_id": p.item_id}, [await agenda_emit(s, st)]
        return await _ack(ctx, p.meeting_id, Action.edit_agenda, change)


def _register_attendance(rt: Realtime) -> None:
    @rt.on("attendance:check_in", CheckIn)
    async def check_in(ctx: EventContext, p: CheckIn) -> dict[str, Any]:
        async def change(s: AsyncSession, a: MeetingAccess, st: ProcedureState) -> Result:
            row = await attendance.check_in(s, p.meeting_id, a.user, AttendanceStatus(p.mode))
            await audit.record(s, p.meeting_id, _uid(a), AuditKind.checked_in,
                               {"user_id": row.user_id, "status": row.status.value,
                                "site_id": row.site_id})
            return ({"status": row.status.value, "site_id": row.site_id},
                    [await attendance_emit(s, st)])
        return await _ack(ctx, p.meeting_id, Action.check_in, change)

    @rt.on("attendance:record", RecordAttendance)
    async def record(ctx: EventContext, p: RecordAttendance) -> dict[str, Any]:
        async def change(s: AsyncSession, a: MeetingAccess, st: ProcedureState) -> Result:
            row = await attendance.record(s, p.meeting_id, a.user, a.role, p.user_id, p.status,
                                          p.reason)
            await audit.record(s, p.meeting_id, _uid(a), AuditKind.attendance_recorded,
                               {"user_id": row.user_id, "status": row.status.value,
                                "reason": row.reason})
            return ({"user_id": row.user_id, "status": row.status.value},
                    [await attendance_emit(s, st)])
        return await _ack(ctx, p.meeting_id, Action.record_attendance, change)

    async def roll_call(ctx: EventContext, p: ProcedureRef, open_: bool) -> dict[str, Any]:
        async def change(s: AsyncSession, a: MeetingAccess, st: ProcedureState) -> Result:
            if st.roll_call_open == open_:
                raise Conflict(f"the roll call is already {'open' if open_ else 'closed'}",
                               code="bad_state")
            st.roll_call_open = open_
            s.add(st)
            await audit.record(s, p.meeting_id, _uid(a), AuditKind.roll_call, {"open": open_})
            return {"roll_call_open": open_}, [await attendance_emit(s, st)]
        return await _ack(ctx, p.meeting_id, Action.run_procedure, change)

    @rt.on("rollcall:start", ProcedureRef)
    async def start(ctx: EventContext, p: ProcedureRef) -> dict[str, Any]:
        return await roll_call(ctx, p, True)

    @rt.on("rollcall:end", ProcedureRef)
    async def end(ctx: EventContext, p: ProcedureRef) -> dict[str, Any]:
        return await roll_call(ctx, p, False)

    @rt.on("rollcall:answer", RollCallAnswer)
    async def answer(ctx: EventContext, p: RollCallAnswer) -> dict[str, Any]:
        async def change(s: AsyncSession, a: MeetingAccess, st: ProcedureState) -> Result:
            row = await attendance.answer_roll_call(s, st, a.user, a.role, p.site_id, p.present,
                                                    p.headcount)
            await audit.record(s, p.meeting_id, _uid(a), AuditKind.site_answered,
                               {"site_id": row.site_id, "present": row.present,
                                "headcount": row.headcount})
            return ({"site_id": row.site_id, "present": row.present, "headcount": row.headcount},
                    [await attendance_emit(s, st)])
        return await _ack(ctx, p.meeting_id, Action.record_attendance, change)


def _floor_result(request: floor.FloorRequest) -> dict[str, Any]:
    return {"request_id": request.id, "status": request.status.value}


FloorOp = Callable[[AsyncSession, MeetingAccess, ProcedureState], Awaitable[floor.FloorRequest]]


async def _floor_change(ctx: EventContext, meeting_id: int, action: Action,
                        op: FloorOp) -> dict[str, Any]:
    """A floor change: `op` changes (and audits) one request; the ack is the request's id and
    status, the push the floor."""
    async def change(s: AsyncSession, a: MeetingAccess, st: ProcedureState) -> Result:
        return _floor_result(await op(s, a, st)), [await floor_emit(s, st)]
    return await _ack(ctx, meeting_id, action, change)


def _register_floor(rt: Realtime) -> None:
    @rt.on("floor:request", FloorAsk)
    async def ask(ctx: EventContext, p: FloorAsk) -> dict[str, Any]:
        async def op(s: AsyncSession, a: MeetingAccess, st: ProcedureState) -> floor.FloorRequest:
            req = await floor.request_floor(s, st, a.user, a.role, p.for_site)
            await audit.record(s, p.meeting_id, _uid(a), AuditKind.floor_requested,
                               {"request_id": req.id, "for_site": req.for_site,
                                "site_id": req.site_id, "item_id": req.agenda_item_id})
            return req
        return await _floor_change(ctx, p.meeting_id, Action.request_floor, op)

    @rt.on("floor:withdraw", FloorRef)
    async def withdraw(ctx: EventContext, p: FloorRef) -> dict[str, Any]:
        async def op(s: AsyncSession, a: MeetingAccess, st: ProcedureState) -> floor.FloorRequest:
            req = await floor.withdraw(s, st, a.user, p.request_id)
            await audit.record(s, p.meeting_id, _uid(a), AuditKind.floor_withdrawn,
                               {"request_id": req.id})
            return req
        return await _floor_change(ctx, p.meeting_id, Action.request_floor, op)

    @rt.on("floor:grant", FloorGrant)
    async def grant(ctx: EventContext, p: FloorGrant) -> dict[str, Any]:
        async def op(s: AsyncSession, a: MeetingAccess, st: ProcedureState) -> floor.FloorRequest:
            req, ended = await floor.grant(s, st, p.request_id, p.limit_seconds)
            if ended is not None:
                await audit.record(s, p.meeting_id, _uid(a), AuditKind.floor_ended,
                                   {"request_id": ended.id, "seconds": ended.spoken_seconds})
            await audit.record(s, p.meeting_id, _uid(a), AuditKind.floor_granted,
                               {"request_id": req.id, "user_id": req.user_id,
                                "site_id": req.site_id, "for_site": req.for_site,
                                "limit_seconds": req.limit_seconds})
            return req
        return await _floor_change(ctx, p.meeting_id, Action.chair_media, op)

    @rt.on("floor:skip", FloorRef)
    async def skip(ctx: EventContext, p: FloorRef) -> dict[str, Any]:
        async def op(s: AsyncSession, a: MeetingAccess, st: ProcedureState) -> floor.FloorRequest:
            req = await floor.skip(s, st, p.request_id)
            await audit.record(s, p.meeting_id, _uid(a), AuditKind.floor_skipped,
                               {"request_id": req.id})
            return req
        return await _floor_change(ctx, p.meeting_id, Action.chair_media, op)

    @rt.on("floor:end", ProcedureRef)
    async def end(ctx: EventContext, p: ProcedureRef) -> dict[str, Any]:
        async def change(s: AsyncSession, a: MeetingAccess, st: ProcedureState) -> Result:
            req = await floor.end_floor(s, st)
            await audit.record(s, p.meeting_id, _uid(a), AuditKind.floor_ended,
                               {"request_id": req.id, "seconds": req.spoken_seconds})
            return ({**_floor_result(req), "seconds": req.spoken_seconds},
                    [await floor_emit(s, st)])
        return await _ack(ctx, p.meeting_id, Action.chair_media, change)


def _register_votes(rt: Realtime) -> None:
    @rt.on("vote:open", VoteOpen)
    async def open_(ctx: EventContext, p: VoteOpen) -> dict[str, Any]:
        async def change(s: AsyncSession, a: MeetingAccess, st: ProcedureState) -> Result:
            spec = votes.NewVote(p.agenda_item_id, p.question, p.secret, p.allow_change,
                                 tuple(p.options) if p.options is not None else None,
                                 p.kind, p.base, p.threshold, p.time_limit_seconds)
            vote = await votes.open_vote(
                s, st, a.user, spec, ctx.app[LIVE].key,
                min_time_limit_s=ctx.app[keys.SETTINGS].vote_time_limit_min_s)
            await audit.record(s, p.meeting_id, _uid(a), AuditKind.vote_opened, {
                "vote_id": vote.id, "item_id": vote.agenda_item_id, "question": vote.question,
                "options": votes.options_of(vote), "secret": vote.secret,
                "allow_change": vote.allow_change, "kind": vote.kind.value,
                "base": vote.base.value, "threshold": vote.threshold.value,
                "closes_at": vote.closes_at.isoformat() if vote.closes_at else None})
            emit = await vote_emit(s, vote.id)  # type: ignore[arg-type]
            return emit[1]["vote"], [emit]
        opened = await _ack(ctx, p.meeting_id, Action.run_procedure, change)
        if opened["closes_at"]:  # the server closes it when its time runs out
            ctx.app[VOTE_TIMERS].arm(p.meeting_id, opened["id"],
                                     datetime.fromisoformat(opened["closes_at"]))
        return opened

    @rt.on("vote:cast", VoteCast)
    async def cast(ctx: EventContext, p: VoteCast) -> dict[str, Any]:
        # Audited by rooms.votes: an open vote's ballots one by one, a secret vote's
        # participation once, at close, as a sorted set (never in the order of casting).
        done, _ = await cast_ballot(ctx.app, ctx.user, p.meeting_id, p.vote_id, p.option, p.seq,
                                    p.receipt)
        ctx.app[LIVE].schedule_tally(p.meeting_id, p.vote_id)
        await ctx.app[keys.BUS].publish(BallotsCast(p.meeting_id, p.vote_id))  # cascade: up
        ack = {"vote_id": done.vote_id, "option": done.option, "changed": done.changed,
               "receipt": done.receipt}
        return {**ack, "replayed": True} if done.replayed else ack

    @rt.on("vote:close", VoteRef)
    async def close(ctx: EventContext, p: VoteRef) -> dict[str, Any]:
        async def change(s: AsyncSession, a: MeetingAccess, st: ProcedureState) -> Result:
            vote = await votes.get_vote(s, p.meeting_id, p.vote_id)
            ctx.app[LIVE].cancel_tally(vote.id)  # type: ignore[arg-type]  # the final goes out
            result = await votes.close_vote(s, vote, ctx.app[LIVE].key)
            data = {"vote_id": vote.id, "totals": result["totals"],
                    "eligible": result["eligible"], "cast": result["cast"],
                    "adopted": result["adopted"]}
            if vote.secret:  # who took part, as a set: ordered by user id, not by time
                data["voters"] = sorted(await votes.participants(s, vote))
            await audit.record(s, p.meeting_id, _uid(a), AuditKind.vote_closed, data)
            emit = await vote_emit(s, vote.id)  # type: ignore[arg-type]
            return emit[1]["vote"], [emit]
        result = await _ack(ctx, p.meeting_id, Action.run_procedure, change)
        ctx.app[VOTE_TIMERS].cancel(p.vote_id)  # closed before its time limit
        if result["secret"]:
            ctx.app[LIVE].scrub_soon()
        return result

    @rt.on("vote:pending", VoteRef)
    async def pending(ctx: EventContext, p: VoteRef) -> dict[str, Any]:
        async with ctx.db.session() as s:
            await meetings.require(s, ctx.user, p.meeting_id, Action.run_procedure)
            return await votes.pending_voters(s, await votes.get_vote(s, p.meeting_id, p.vote_id))

    @rt.on("vote:site_counts", SiteCounts)
    async def site_counts(ctx: EventContext, p: SiteCounts) -> dict[str, Any]:
        async def change(s: AsyncSession, a: MeetingAccess, st: ProcedureState) -> Result:
            vote = await votes.get_vote(s, p.meeting_id, p.vote_id)
            row = await votes.enter_site_counts(s, vote, a.user, a.role, p.site_id, p.counts)
            await audit.record(s, p.meeting_id, _uid(a), AuditKind.site_counts,
                               {"vote_id": vote.id, "site_id": row.site_id, "counts": p.counts})
            return {"vote_id": vote.id, "site_id": row.site_id, "counts": p.counts}, []
        result = await _ack(ctx, p.meeting_id, Action.record_attendance, change)
        ctx.app[LIVE].schedule_tally(p.meeting_id, p.vote_id)
        return result
