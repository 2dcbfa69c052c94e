"""socket.io events for joining and leaving a meeting's live channel."""

from __future__ import annotations

from typing import Any

from rooms import meetings
from server.core.realtime import EventContext, EventSchema, Realtime, meeting_room


class MeetingRef(EventSchema):
    meeting_id: int


def register(rt: Realtime) -> None:
    @rt.on("meeting:join", MeetingRef)
    async def join(ctx: EventContext, payload: MeetingRef) -> dict[str, Any]:
        async with ctx.db.session() as s:
            access = await meetings.require(s, ctx.user, payload.meeting_id)
            data = meetings.meeting_dict(access.meeting, access.role)
        await ctx.sio.enter_room(ctx.sid, meeting_room(payload.meeting_id))
        return data

    @rt.on("meeting:leave", MeetingRef)
    async def leave(ctx: EventContext, payload: MeetingRef) -> dict[str, Any]:
        await ctx.sio.leave_room(ctx.sid, meeting_room(payload.meeting_id))
        return {"left": payload.meeting_id}
