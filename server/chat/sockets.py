"""socket.io events of the meeting chat: send, history, hide (docs/protocol.md, "Chat")."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from rooms import chat, meetings
from rooms.permissions import Action, allows
from server.chat.events import ChatPosted
from server.chat.keys import LIMITS
from server.core import keys
from server.core.realtime import EventContext, EventSchema, Realtime, meeting_room, user_room


class Send(EventSchema):
    meeting_id: int
    to: Literal["all", "chair"]
    # The schema bounds what is parsed at all; rooms.chat refuses over MAX_TEXT after strip.
    text: str = Field(max_length=chat.MAX_TEXT + 200)


class History(EventSchema):
    meeting_id: int
    before_id: int | None = None
    limit: int = Field(default=chat.HISTORY_LIMIT, ge=1, le=chat.HISTORY_LIMIT)


class Hide(EventSchema):
    meeting_id: int
    message_id: int


async def deliver(ctx: EventContext, message: chat.ChatMessage, staff: list[int]) -> None:
    """`chat:message` to the meeting's room, or, for a private one, to the sender and the
    chair and secretaries (their user rooms: whichever page of the meeting they have open)."""
    data = chat.message_dict(message)
    if message.audience == chat.Audience.all.value:
        await ctx.sio.emit("chat:message", data, room=meeting_room(message.meeting_id))
        return
    for uid in {message.sender_id, *staff}:
        await ctx.sio.emit("chat:message", data, room=user_room(uid))


def register(rt: Realtime) -> None:
    @rt.on("chat:send", Send)
    async def send(ctx: EventContext, payload: Send) -> dict[str, Any]:
        async with ctx.db.session() as s:
            access = await meetings.require(s, ctx.user, payload.meeting_id)
            ctx.app[LIMITS].spend(ctx.user.id, payload.meeting_id)  # type: ignore[arg-type]
            message = await chat.post(s, access, chat.Audience(payload.to), payload.text)
            staff = (await chat.staff_ids(s, payload.meeting_id)
                     if message.audience == chat.Audience.chair.value else [])
        await deliver(ctx, message, staff)
        if message.audience == chat.Audience.all.value:
            await ctx.app[keys.BUS].publish(ChatPosted(
                message.meeting_id, message.id, message.sender_name,  # type: ignore[arg-type]
                message.text))
        return chat.message_dict(message)

    @rt.on("chat:history", History)
    async def history(ctx: EventContext, payload: History) -> dict[str, Any]:
        async with ctx.db.session() as s:
            access = await meetings.require(s, ctx.user, payload.meeting_id)
            found = await chat.history(s, access, payload.before_id, payload.limit)
            return {"meeting_id": payload.meeting_id,
                    "can_moderate": allows(access.role, Action.run_procedure),
                    "messages": [chat.message_dict(m, access) for m in found]}

    @rt.on("chat:hide", Hide)
    async def hide(ctx: EventContext, payload: Hide) -> dict[str, Any]:
        async with ctx.db.session() as s:
            # Moderation is the chair's: run_procedure is the chair's alone (rooms/permissions.py).
            access = await meetings.require(s, ctx.user, payload.meeting_id, Action.run_procedure)
            message = await chat.hide(s, access, payload.message_id)
            staff = (await chat.staff_ids(s, payload.meeting_id)
                     if message.audience == chat.Audience.chair.value else [])
        data = {"meeting_id": payload.meeting_id, "message_id": payload.message_id}
        if message.audience == chat.Audience.all.value:
            await ctx.sio.emit("chat:hidden", data, room=meeting_room(payload.meeting_id))
        else:
            for uid in {message.sender_id, *staff}:
                await ctx.sio.emit("chat:hidden", data, room=user_room(uid))
        return data
