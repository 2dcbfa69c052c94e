"""HTTP routes of the replay (issue 16, item 3): the page, a meeting's recordings, one
recording's timeline, and its track files with Range support (the browser seeks).

Access is the meeting's: `view` (any member); anyone else gets 404 (a meeting's existence is
not revealed), like every route inside a meeting. The presented pages are not served here:
the page shows them through the documents' own page route, so a confidential document keeps
its per-viewer watermark and its access check.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from sqlmodel import col, select

from documents.db_models import Document
from rooms import agenda, recording_log
from rooms.chat import ChatMessage, message_dict
from rooms.errors import DomainError, NotFound
from rooms.meetings import MeetingAccess
from rooms.permissions import Action
from rooms.recording_log import Kind
from server.core import keys
from server.core.auth import meeting_access
from server.core.http_util import int_id
from server.recording.keys import RECORDINGS

routes = web.RouteTableDef()
FILE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}\.(webm|ts)")  # as media/recorder.py names them


class BadRange(DomainError):
    code, status = "bad_range", 416


async def _access(request: web.Request) -> MeetingAccess:
    async with request.app[keys.DB].session() as s:
        return await meeting_access(s, request, Action.view)


@routes.get("/meetings/{meeting_id}/replay")
@aiohttp_jinja2.template("replay.html")
async def replay_page(request: web.Request) -> dict[str, Any]:
    access = await _access(request)
    return {"meeting": access.meeting, "role": access.role.value}


@routes.get("/api/meetings/{meeting_id}/recordings")
async def list_recordings(request: web.Request) -> web.Response:
    access = await _access(request)
    running = request.app[RECORDINGS].active.get(access.meeting.id)  # type: ignore[arg-type]
    async with request.app[keys.DB].session() as s:
        rows = await recording_log.recordings(s, access.meeting.id)  # type: ignore[arg-type]
    return web.json_response({"recordings": [
        {**recording_log.recording_dict(r),
         "running": running is not None and running.recording_id == r.id} for r in rows]})


@routes.get("/api/meetings/{meeting_id}/recordings/{recording_id}/timeline")
async def timeline(request: web.Request) -> web.Response:
    access = await _access(request)
    meeting_id = access.meeting.id
    assert meeting_id is not None
    async with request.app[keys.DB].session() as s:
        row = await recording_log.get(s, meeting_id, int_id(request, "recording_id"))
        entries = await recording_log.entries(s, row.id)  # type: ignore[arg-type]
        items = [{"id": i.id, "position": i.position, "title": i.title}
                 for i in await agenda.items(s, meeting_id)]
        await _chat_as_seen(s, access, entries)
        doc_ids = {e["data"]["document_id"] for e in entries
                   if e["kind"] == Kind.presented and e["data"].get("document_id")}
        titles = dict((await s.exec(select(Document.id, Document.title).where(
            col(Document.id).in_(doc_ids), Document.meeting_id == meeting_id))).all()) \
            if doc_ids else {}
    running = request.app[RECORDINGS].active.get(meeting_id)
    return web.json_response({
        "recording": {**recording_log.recording_dict(row),
                      "running": running is not None and running.recording_id == row.id},
        "tracks": [dict(e["data"], offset_ms=e["offset_ms"]) for e in entries
                   if e["kind"] == Kind.track and _file(request, row, e["data"]["file"])],
        "entries": entries, "agenda": items,
        "documents": {str(k): v for k, v in titles.items()}})


async def _chat_as_seen(s: Any, access: MeetingAccess, entries: list[dict[str, Any]]) -> None:
    """A message hidden by the chair since: its text as this member may see it now."""
    ids = [e["data"]["message_id"] for e in entries if e["kind"] == Kind.chat]
    if not ids:
        return
    rows = (await s.exec(select(ChatMessage).where(col(ChatMessage.id).in_(ids)))).all()
    seen = {m.id: message_dict(m, access) for m in rows}
    for e in entries:
        if e["kind"] == Kind.chat:
            shown = seen.get(e["data"]["message_id"])
            e["data"]["hidden"] = bool(shown and shown["hidden"])
            e["data"]["text"] = shown["text"] if shown else ""


def _file(request: web.Request, row: recording_log.Recording, name: str) -> Path | None:
    """The track file, if it is one of this recording's (never a path out of its folder)."""
    if not FILE_NAME.fullmatch(name):
        return None
    folder = request.app[keys.SETTINGS].data_dir / "recordings" / str(row.meeting_id) / \
        row.directory
    path = folder / name
    return path if path.is_file() else None


@routes.get("/api/meetings/{meeting_id}/recordings/{recording_id}/files/{name}")
async def track_file(request: web.Request) -> web.StreamResponse:
    access = await _access(request)
    async with request.app[keys.DB].session() as s:
        row = await recording_log.get(s, access.meeting.id,  # type: ignore[arg-type]
                                      int_id(request, "recording_id"))
    path = _file(request, row, request.match_info["name"])
    if path is None:
        raise NotFound("no such track file")
    size = path.stat().st_size
    if "Range" in request.headers:
        try:
            rng = request.http_range
        except ValueError:
            raise BadRange("Range: one range, bytes=START-END") from None
        if rng.start is not None and rng.start >= size:
            raise BadRange(f"Range: the file has {size} bytes")
    content_type = "video/webm" if path.suffix == ".webm" else "video/mp2t"
    # A running recording's file grows: no caching; a finished one is revalidated.
    return web.FileResponse(path, headers={"Content-Type": content_type,
                                           "Cache-Control": "private, no-cache",
                                           "Accept-Ranges": "bytes"})


def register(app: web.Application) -> None:
    app.router.add_routes(routes)
