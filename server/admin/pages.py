"""The administrators' audit page: every meeting's hash chain, verified on each view."""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web
from sqlmodel import col, select

from rooms import audit
from rooms.models import Meeting
from server.core import keys
from server.core.auth import require_admin

routes = web.RouteTableDef()


@routes.get("/admin/audit")
@aiohttp_jinja2.template("admin_audit.html")
async def audit_page(request: web.Request) -> dict[str, Any]:
    require_admin(request)
    async with request.app[keys.DB].session() as s:
        reports = await audit.verify_chain(s)
        rows = await s.exec(select(Meeting.id, Meeting.title)
                            .where(col(Meeting.id).in_([r.meeting_id for r in reports])))
        titles = dict(rows.all())
    return {"reports": [(r, titles.get(r.meeting_id, "?")) for r in reports],
            "all_ok": all(r.ok for r in reports)}
