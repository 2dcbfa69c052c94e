"""The meeting's procedure states a chair or secretary sets beyond open and close
(server/meetings/routes.py): pause and resume (a recess), and reopen a closed meeting.
Each is an audit entry (rooms/meeting_state.py) and a `meeting:updated` push whose `status`
is what people see: open, paused or closed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from sqlmodel.ext.asyncio.session import AsyncSession

from rooms import meeting_state, meetings
from rooms.meetings import MeetingAccess
from rooms.permissions import Action
from rooms.procedure_models import ProcedureState
from server.core.auth import current_user
from server.core.http_util import int_id
from server.procedure.live import When, run_change
from server.procedure.views import Emit, agenda_emit

routes = web.RouteTableDef()
Step = Callable[[AsyncSession, MeetingAccess, ProcedureState], Awaitable[None]]


async def _step(request: web.Request, step: Step) -> web.Response:
    meeting_id = int_id(request, "meeting_id")

    async def change(s: AsyncSession, a: MeetingAccess, st: ProcedureState
                     ) -> tuple[dict[str, Any], list[Emit]]:
        await step(s, a, st)
        shown = {**meetings.meeting_dict(a.meeting),
                 "status": meeting_state.shown_status(a.meeting, st)}
        return shown, [("meeting:updated", shown), await agenda_emit(s, st)]
    result, _ = await run_change(request.app, current_user(request), meeting_id, Action.manage,
                                 change, when=When.any)
    return web.json_response(result)


@routes.post("/api/meetings/{meeting_id}/pause")
async def pause(request: web.Request) -> web.Response:
    return await _step(request, lambda s, a, st: meeting_state.pause(s, a.meeting, st,
                                                                     a.user.id))


@routes.post("/api/meetings/{meeting_id}/resume")
async def resume(request: web.Request) -> web.Response:
    return await _step(request, lambda s, a, st: meeting_state.resume(s, a.meeting, st,
                                                                      a.user.id))


@routes.post("/api/meetings/{meeting_id}/reopen")
async def reopen(request: web.Request) -> web.Response:
    return await _step(request, lambda s, a, st: meeting_state.reopen(s, a.meeting, st,
                                                                      a.user.id))
