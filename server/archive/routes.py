"""HTTP routes of the archive: make a meeting's archive or composite video (a job, its
progress pushed to the requester and readable here), list and download the files, and the
administrators' disk use per meeting (docs/protocol.md, "Archive").

Making and downloading take `manage` (the meeting's chair and secretary); anyone else gets
403, and a meeting the caller is not in 404, as everywhere inside a meeting.
"""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web

from rooms.meetings import MeetingAccess
from rooms.permissions import Action
from server.archive.keys import ARCHIVES, RETENTION
from server.core import keys
from server.core.auth import current_user, meeting_access, require_admin
from server.core.http_util import Body, read_body

routes = web.RouteTableDef()


class CompositeRequest(Body):
    recording_id: int | None = None  # default: the meeting's last finished recording


async def _manager(request: web.Request) -> MeetingAccess:
    async with request.app[keys.DB].session() as s:
        return await meeting_access(s, request, Action.manage)


@routes.get("/meetings/{meeting_id}/archive")
@aiohttp_jinja2.template("archive.html")
async def archive_page(request: web.Request) -> dict[str, Any]:
    access = await _manager(request)
    return {"meeting": access.meeting}


@routes.post("/api/meetings/{meeting_id}/archive")
async def make_archive(request: web.Request) -> web.Response:
    access = await _manager(request)
    archives = request.app[ARCHIVES]
    user = access.user
    job = archives.jobs.start("archive", access.meeting.id or 0, user.id or 0,
                              lambda j: archives.make_archive(j, user))
    return web.json_response(job.as_dict(), status=202)


@routes.post("/api/meetings/{meeting_id}/composite")
async def make_composite(request: web.Request) -> web.Response:
    access = await _manager(request)
    body = await read_body(request, CompositeRequest) if request.body_exists \
        else CompositeRequest()
    archives = request.app[ARCHIVES]
    user = access.user
    job = archives.jobs.start("composite", access.meeting.id or 0, user.id or 0,
                              lambda j: archives.make_composite(j, user, body.recording_id))
    return web.json_response(job.as_dict(), status=202)


@routes.get("/api/archive/jobs/{job_id}")
async def job_status(request: web.Request) -> web.Response:
    user = current_user(request)
    job = request.app[ARCHIVES].jobs.get(request.match_info["job_id"], user.id or 0)
    return web.json_response(job.as_dict())


@routes.get("/api/meetings/{meeting_id}/archives")
async def list_files(request: web.Request) -> web.Response:
    access = await _manager(request)
    archives = request.app[ARCHIVES]
    meeting_id = access.meeting.id or 0
    return web.json_response({
        "files": archives.files(meeting_id),
        "jobs": [j.as_dict() for j in archives.jobs.running(meeting_id)
                 if j.user_id == access.user.id]})


@routes.get("/api/meetings/{meeting_id}/archives/{name}")
async def download(request: web.Request) -> web.FileResponse:
    access = await _manager(request)
    path = request.app[ARCHIVES].file(access.meeting.id or 0, request.match_info["name"])
    kind = "application/zip" if path.suffix == ".zip" else "video/mp4"
    return web.FileResponse(path, headers={
        "Content-Type": kind, "Cache-Control": "no-store",
        "Content-Disposition": f'attachment; filename="{path.name}"'})


@routes.get("/api/admin/storage")
async def storage(request: web.Request) -> web.Response:
    require_admin(request)
    return web.json_response(await request.app[RETENTION].usage())


@routes.get("/admin/storage")
@aiohttp_jinja2.template("admin_storage.html")
async def storage_page(request: web.Request) -> dict[str, Any]:
    require_admin(request)
    return {"usage": await request.app[RETENTION].usage()}
