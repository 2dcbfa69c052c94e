"""A lower level's chair and the floor requests of their own node's people
(docs/cascade.md, "Floor across nodes"): by default every request made on a mirror goes up
to the owner's chair at once; `floor:hold` keeps new ones in this node's own queue for a
local discussion (this node's chair grants them here, and the owner's holder no longer
replaces the local one), `floor:escalate` sends one of them up, and releasing the hold sends
up every one still waiting. socket.io, for a chair of the mirrored meeting; refused
`not_mirrored` on a meeting this node owns."""

from __future__ import annotations

from typing import Any

from pydantic import Field
from sqlmodel.ext.asyncio.session import AsyncSession

from rooms import audit, floor
from rooms.errors import Conflict
from rooms.meetings import MeetingAccess
from rooms.permissions import Action
from rooms.procedure_models import FloorStatus, ProcedureState
from rooms.remote_floor import ref_put
from server.core.realtime import EventContext, EventSchema, Realtime
from server.procedure.live import run_change
from server.procedure.views import Emit, floor_emit

HOLD = "floor:hold"  # CascadeRef: 1 while this node keeps its people's requests


class FloorHold(EventSchema):
    meeting_id: int
    hold: bool


class FloorEscalate(EventSchema):
    meeting_id: int
    request_id: int = Field(ge=1)


def _mirrored(access: MeetingAccess) -> None:
    if access.meeting.cascade_key is None:
        raise Conflict("this meeting is held here: its requests are already at its chair",
                       code="not_mirrored")


def register(rt: Realtime) -> None:
    @rt.on("floor:hold", FloorHold)
    async def hold(ctx: EventContext, p: FloorHold) -> dict[str, Any]:
        async def change(s: AsyncSession, a: MeetingAccess, st: ProcedureState
                         ) -> tuple[dict[str, Any], list[Emit]]:
            _mirrored(a)
            await ref_put(s, p.meeting_id, HOLD, 1 if p.hold else 0)
            await audit.record(s, p.meeting_id, a.user.id, "floor_hold", {"hold": p.hold})
            return {"hold": p.hold}, [await floor_emit(s, st)]  # releasing: escalated now
        return (await run_change(ctx.app, ctx.user, p.meeting_id, Action.chair_media,
                                 change))[0]

    @rt.on("floor:escalate", FloorEscalate)
    async def escalate(ctx: EventContext, p: FloorEscalate) -> dict[str, Any]:
        async def change(s: AsyncSession, a: MeetingAccess, st: ProcedureState
                         ) -> tuple[dict[str, Any], list[Emit]]:
            _mirrored(a)
            request = await floor.get_request(s, p.meeting_id, p.request_id)
            if request.status != FloorStatus.queued:
                raise Conflict(f"floor request {request.id} is {request.status.value}",
                               code="bad_state")
            await ref_put(s, p.meeting_id, f"up:{request.id}", 1)
            await audit.record(s, p.meeting_id, a.user.id, "floor_escalated",
                               {"request_id": request.id})
            return ({"request_id": request.id, "escalated": True},
                    [await floor_emit(s, st)])
        return (await run_change(ctx.app, ctx.user, p.meeting_id, Action.chair_media,
                                 change))[0]
