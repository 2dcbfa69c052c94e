"""Meeting REST routes: list mine, schedule, details, open/close, members, the directory of
who may be invited."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from rooms import meetings, procedure
from rooms.errors import Invalid
from rooms.models import MeetingRole, MeetingStatus
from rooms.permissions import Action
from rooms.procedure_models import RuleSet
from server.core import keys
from server.core.auth import current_user, meeting_access
from server.core.http_util import Body, int_id, read_body
from server.core.realtime import meeting_room
from server.meetings.events import MeetingClosed

routes = web.RouteTableDef()


class NewMeeting(Body):
    title: str
    unit_id: int
    starts_at: str  # ISO 8601
    description: str = ""
    # Whose working rules votes and the quorum follow, with their quorum (none: the
    # procedure's defaults until set in its settings).
    rule_set: RuleSet | None = None


class NewMember(Body):
    role: MeetingRole
    user_id: int | None = None
    site_id: int | None = None


def _parse_time(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise Invalid("starts_at must be an ISO 8601 date-time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@routes.get("/api/meetings")
async def my_meetings(request: web.Request) -> web.Response:
    user = current_user(request)
    async with request.app[keys.DB].session() as s:
        found = await meetings.meetings_for(s, user)
    return web.json_response({"meetings": [meetings.meeting_dict(m, r) for m, r in found]})


@routes.post("/api/meetings")
async def schedule(request: web.Request) -> web.Response:
    user = current_user(request)
    body = await read_body(request, NewMeeting)
    async with request.app[keys.DB].session() as s:
        meeting = await meetings.create_meeting(s, user, title=body.title, unit_id=body.unit_id,
                                                starts_at=_parse_time(body.starts_at),
                                                description=body.description)
        data = meetings.meeting_dict(meeting)
        if body.rule_set is not None:
            assert meeting.id is not None
            await procedure.set_rule_set(s, meeting.id, body.rule_set)
            data["rule_set"] = body.rule_set.value
        return web.json_response(data, status=201)


@routes.get("/api/directory")
async def directory(request: web.Request) -> web.Response:
    """Units, sites and people a scheduler may invite (admin, chair, secretary)."""
    user = current_user(request)
    async with request.app[keys.DB].session() as s:
        return web.json_response(await meetings.directory(s, user))


@routes.get("/api/meetings/{meeting_id}")
async def details(request: web.Request) -> web.Response:
    async with request.app[keys.DB].session() as s:
        access = await meeting_access(s, request)
        data = meetings.meeting_dict(access.meeting, access.role)
        data["members"] = await meetings.members(s, access.meeting.id)  # type: ignore[arg-type]
    return web.json_response(data)


async def _advance(request: web.Request, to: MeetingStatus) -> web.Response:
    async with request.app[keys.DB].session() as s:
        access = await meeting_access(s, request, Action.manage)
        meeting = await meetings.advance_status(s, access.meeting, to)
        data = meetings.meeting_dict(meeting)
    assert meeting.id is not None
    await request.app[keys.SIO].emit("meeting:updated", data, room=meeting_room(meeting.id))
    if to is MeetingStatus.closed:
        await request.app[keys.BUS].publish(MeetingClosed(meeting.id))
    return web.json_response(data)


@routes.post("/api/meetings/{meeting_id}/open")
async def open_meeting(request: web.Request) -> web.Response:
    return await _advance(request, MeetingStatus.open)


@routes.post("/api/meetings/{meeting_id}/close")
async def close_meeting(request: web.Request) -> web.Response:
    return await _advance(request, MeetingStatus.closed)


@routes.get("/api/meetings/{meeting_id}/members")
async def list_members(request: web.Request) -> web.Response:
    async with request.app[keys.DB].session() as s:
        access = await meeting_access(s, request)
        return web.json_response({"members": await meetings.members(s, access.meeting.id)})  # type: ignore[arg-type]


@routes.post("/api/meetings/{meeting_id}/members")
async def add_member(request: web.Request) -> web.Response:
    current_user(request)  # 401 before the body is read
    body = await read_body(request, NewMember)
    async with request.app[keys.DB].session() as s:
        access = await meeting_access(s, request, Action.manage)
        member = await meetings.add_member(s, access, body.role, user_id=body.user_id,
                                           site_id=body.site_id)
        return web.json_response({"id": member.id, "role": member.role.value,
                                  "user_id": member.user_id, "site_id": member.site_id},
                                 status=201)


@routes.delete("/api/meetings/{meeting_id}/members/{member_id}")
async def remove_member(request: web.Request) -> web.Response:
    async with request.app[keys.DB].session() as s:
        access = await meeting_access(s, request, Action.manage)
        await meetings.remove_member(s, access, int_id(request, "member_id"))
    return web.json_response({"removed": True})
