"""HTTP routes of the meeting chat: the history a member may read, and the whole record
(private and hidden messages included) exported for the chair and secretariat."""

from __future__ import annotations

import csv
import io
import json

from aiohttp import web

from rooms import chat
from rooms.errors import Invalid
from rooms.permissions import Action
from server.core import keys
from server.core.auth import meeting_access
from server.core.http_util import query_int

routes = web.RouteTableDef()
CSV_COLUMNS = ("id", "at", "sender_id", "sender", "to", "text", "hidden", "hidden_at")


@routes.get("/api/meetings/{meeting_id}/chat")
async def history(request: web.Request) -> web.Response:
    before = query_int(request, "before_id", 0)
    async with request.app[keys.DB].session() as s:
        access = await meeting_access(s, request)
        found = await chat.history(s, access, before or None)
        return web.json_response({"meeting_id": access.meeting.id,
                                  "messages": [chat.message_dict(m, access) for m in found]})


@routes.get("/api/meetings/{meeting_id}/chat/export")
async def export(request: web.Request) -> web.Response:
    """`?format=csv` (default, UTF-8 with a BOM so spreadsheet programs read Vietnamese) or
    `json`. The meeting's record: managers only (chair, secretary)."""
    kind = request.query.get("format", "csv")
    if kind not in ("csv", "json"):
        raise Invalid("format: csv or json")
    async with request.app[keys.DB].session() as s:
        access = await meeting_access(s, request, Action.manage)
        rows = [chat.message_dict(m) for m in await chat.record(s, access.meeting.id)]  # type: ignore[arg-type]
    name = f"meeting-{access.meeting.id}-chat.{kind}"
    disposition = {"Content-Disposition": f'attachment; filename="{name}"'}
    if kind == "json":
        body = json.dumps({"meeting_id": access.meeting.id, "title": access.meeting.title,
                           "messages": rows}, ensure_ascii=False, indent=1)
        return web.Response(text=body, content_type="application/json", headers=disposition)
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.DictWriter(out, CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row[k]) for k in CSV_COLUMNS})
    return web.Response(text=out.getvalue(), content_type="text/csv", headers=disposition)


def _cell(value: object) -> object:
    """No formula injection: a cell a spreadsheet would evaluate starts with a quote."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return value
