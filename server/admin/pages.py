"""The administrators' audit page: every meeting's hash chain, verified on each view, and the
entries themselves, filtered by meeting, action and date, exported as CSV."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp_jinja2
from aiohttp import web
from sqlmodel import col, select

from rooms import audit, audit_query
from rooms.errors import Invalid
from rooms.models import Meeting
from server.core import keys
from server.core.auth import require_admin
from server.core.http_util import parse_int

routes = web.RouteTableDef()
CSV_COLUMNS = ("meeting_id", "meeting", "seq", "at", "actor_id", "actor", "action", "data",
               "hash")


def audit_filter(request: web.Request) -> tuple[audit_query.AuditFilter, dict[str, str]]:
    """The page's query (`meeting`, `action`, `from`, `to`: dates in the configured time
    zone, both days included) as a filter, and the values to show back in the form."""
    q = request.query
    zone = ZoneInfo(request.app[keys.SETTINGS].timezone)
    meeting = q.get("meeting", "").strip()
    action = q.get("action", "").strip()[:64]
    days = {name: q.get(name, "").strip() for name in ("from", "to")}
    parsed: dict[str, datetime | None] = {}
    for name, text in days.items():
        try:
            day = date.fromisoformat(text) if text else None
            parsed[name] = None if day is None else datetime.combine(
                day + timedelta(days=1 if name == "to" else 0), time(), zone)
        except (ValueError, OverflowError):  # not a date, or the last day of year 9999
            raise Invalid(f"{name}: a date as YYYY-MM-DD") from None
    where = audit_query.AuditFilter(
        meeting_id=parse_int(meeting, "meeting", low=1) if meeting else None,
        kind=action or None, since=parsed["from"], until=parsed["to"])
    return where, {"meeting": meeting, "action": action, **days}


@routes.get("/admin/audit")
@aiohttp_jinja2.template("admin_audit.html")
async def audit_page(request: web.Request) -> dict[str, Any]:
    require_admin(request)
    where, form = audit_filter(request)
    async with request.app[keys.DB].session() as s:
        reports = await audit.verify_chain(s)
        rows = await s.exec(select(Meeting.id, Meeting.title)
                            .where(col(Meeting.id).in_([r.meeting_id for r in reports])))
        titles = dict(rows.all())
        found = await audit_query.entries(s, where)
        kinds = await audit_query.kinds(s)
    return {"reports": [(r, titles.get(r.meeting_id, "?")) for r in reports],
            "all_ok": all(r.ok for r in reports), "entries": found, "kinds": kinds,
            "titles": sorted(titles.items()), "form": form, "limit": audit_query.PAGE_LIMIT,
            "query_string": request.query_string}


@routes.get("/admin/audit/export")
async def audit_export(request: web.Request) -> web.Response:
    """The filtered entries, oldest first per meeting, as CSV (UTF-8 with a BOM)."""
    require_admin(request)
    where, _ = audit_filter(request)
    zone = ZoneInfo(request.app[keys.SETTINGS].timezone)
    async with request.app[keys.DB].session() as s:
        found = await audit_query.entries(s, where, limit=None, newest_first=False)
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for row in found:
        e = row.entry
        writer.writerow([_cell(v) for v in (
            e.meeting_id, row.meeting_title, e.seq, e.at.astimezone(zone).isoformat(),
            e.actor_id or "", row.actor_name or "", e.kind, e.data_json, e.hash)])
    return web.Response(text=out.getvalue(), content_type="text/csv", headers={
        "Content-Disposition": 'attachment; filename="hopso-audit.csv"'})


def _cell(value: object) -> object:
    """No formula injection: a cell a spreadsheet would evaluate starts with a quote."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return value
