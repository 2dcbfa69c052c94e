"""The documents page of a meeting: list, upload, the tablet viewer (web_client/static/js)."""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web

from rooms.permissions import Action, allows
from server.core import keys
from server.core.auth import current_user, meeting_access

routes = web.RouteTableDef()


@routes.get("/meetings/{meeting_id}/documents")
@aiohttp_jinja2.template("documents.html")
async def documents_page(request: web.Request) -> dict[str, Any]:
    user = current_user(request)
    async with request.app[keys.DB].session() as s:
        access = await meeting_access(s, request)
    role = access.role
    return {
        "meeting": access.meeting, "role": role.value, "me": user.id,
        "can_upload": allows(role, Action.upload_document),
        "can_annotate": allows(role, Action.annotate),
        "can_present": allows(role, Action.present),
    }
