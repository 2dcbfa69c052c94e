"""The projector view of a meeting (GET /meetings/{id}/projector): what the meeting room's big
screen shows (current item and timer, speaker, vote result, the presented page), read-only.

Opened by whoever runs a room's screen: a site operator of an invited site (who has no
delegate's rights: no vote, no check-in), or the chair and secretary. Everything it shows
comes from events any member may read (procedure:state, present:get); the page itself grants
nothing. Delegates and observers are refused 403 (they have their own screens)."""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web

from rooms.errors import Forbidden
from rooms.models import MeetingRole
from server.core import keys
from server.core.auth import meeting_access

routes = web.RouteTableDef()
PROJECTOR_ROLES = frozenset({MeetingRole.site_operator, MeetingRole.chair, MeetingRole.secretary})


@routes.get("/meetings/{meeting_id}/projector")
@aiohttp_jinja2.template("projector.html")
async def projector_page(request: web.Request) -> dict[str, Any]:
    async with request.app[keys.DB].session() as s:
        access = await meeting_access(s, request)
    if access.role not in PROJECTOR_ROLES:
        raise Forbidden("the projector view is for the room's operator, the chair and the "
                        "secretary")
    return {"meeting": access.meeting, "role": access.role.value}
