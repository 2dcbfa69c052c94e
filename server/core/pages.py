"""Server-rendered pages (Jinja2). Pages read; changes go through the JSON API."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp_jinja2
from aiohttp import web

from rooms import meetings, units, users
from rooms.permissions import CAN_CREATE_MEETINGS, Action, allows
from server.core import keys
from server.core.auth import AUTH, USER, current_user, meeting_access, require_admin
from server.core.i18n import LANG

routes = web.RouteTableDef()


async def template_context(request: web.Request) -> dict[str, Any]:
    """Available in every template: who is logged in, language, translations, CSRF token."""
    lang = request.get(LANG, "vi")
    auth = request.get(AUTH)
    return {
        "user": request.get(USER), "lang": lang,
        "_": request.app[keys.TRANSLATOR].gettext(lang),
        "csrf_token": auth.csrf_token if auth else "",
        "source_url": request.app[keys.SETTINGS].source_url,
        "path": request.path,
    }


@routes.get("/meetings")
@aiohttp_jinja2.template("dashboard.html")
async def dashboard(request: web.Request) -> dict[str, Any]:
    user = current_user(request)
    can_schedule = user.role in CAN_CREATE_MEETINGS
    async with request.app[keys.DB].session() as s:
        found = await meetings.meetings_for(s, user)
        tree = await units.unit_tree(s) if can_schedule else []
    zone_name = request.app[keys.SETTINGS].timezone
    now = datetime.now(ZoneInfo(zone_name))
    tomorrow = (now + timedelta(days=1)).date()
    offset = now.strftime("%z")
    # The schedule form (web_client/static/js/schedule.js): host units in tree order, the
    # date and time read in the configured time zone and sent as ISO 8601 with its offset.
    return {"meetings": [(m, r.value) for m, r in found], "can_schedule": can_schedule,
            "host_units": _flatten(tree), "timezone": zone_name,
            "utc_offset": f"{offset[:3]}:{offset[3:]}",
            "default_date": tomorrow.isoformat()}


@routes.get("/meetings/{meeting_id}")
@aiohttp_jinja2.template("meeting.html")
async def meeting_page(request: web.Request) -> dict[str, Any]:
    user = current_user(request)
    async with request.app[keys.DB].session() as s:
        access = await meeting_access(s, request)
        member_list = await meetings.members(s, access.meeting.id)  # type: ignore[arg-type]
    # can_manage: the members panel (web_client/static/js/members.js) replaces the plain list.
    # The rest is for the documents pane (documents_pane.html), as on the documents page.
    return {"meeting": access.meeting, "role": access.role.value, "members": member_list,
            "can_manage": allows(access.role, Action.manage), "me": user.id,
            "can_upload": allows(access.role, Action.upload_document),
            "can_annotate": allows(access.role, Action.annotate),
            "can_present": allows(access.role, Action.present)}


@routes.get("/admin")
async def admin_home(request: web.Request) -> web.Response:
    require_admin(request)
    raise web.HTTPFound("/admin/units")


@routes.get("/admin/units")
@aiohttp_jinja2.template("admin_units.html")
async def admin_units(request: web.Request) -> dict[str, Any]:
    require_admin(request)
    async with request.app[keys.DB].session() as s:
        tree = await units.unit_tree(s)
    return {"rows": _flatten(tree)}


def _flatten(tree: list[units.UnitNode]) -> list[tuple[int, units.UnitNode]]:
    """The unit tree as (depth, node) rows, parents before their children."""
    flat: list[tuple[int, units.UnitNode]] = []

    def walk(nodes: list[units.UnitNode], depth: int) -> None:
        for node in nodes:
            flat.append((depth, node))
            walk(node.children, depth + 1)
    walk(tree, 0)
    return flat


@routes.get("/admin/users")
@aiohttp_jinja2.template("admin_users.html")
async def admin_users(request: web.Request) -> dict[str, Any]:
    require_admin(request)
    async with request.app[keys.DB].session() as s:
        people = await users.all_users(s)
        tree = await units.unit_tree(s)
    unit_names: dict[int | None, str] = {}

    def walk(nodes: list[units.UnitNode]) -> None:
        for node in nodes:
            unit_names[node.unit.id] = node.unit.name
            walk(node.children)
    walk(tree)
    return {"people": people, "unit_names": unit_names}



FAVICON = Path(__file__).resolve().parents[2] / "web_client" / "static" / "favicon.ico"


@routes.get("/favicon.ico")
async def favicon(request: web.Request) -> web.FileResponse:
    """Browsers ask for it on every page (base.html links the SVG one too)."""
    return web.FileResponse(FAVICON, headers={"Content-Type": "image/x-icon",
                                              "Cache-Control": "public, max-age=86400"})
