"""Procedure REST routes: state, agenda editing, settings, receipts, minutes, audit."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from pydantic import Field
from sqlmodel.ext.asyncio.session import AsyncSession

from documents import catalog
from rooms import agenda, attendance, audit, meetings, minutes, procedure, votes
from rooms.audit import AuditKind
from rooms.errors import Conflict
from rooms.meetings import MeetingAccess
from rooms.minutes_data import MinutesData
from rooms.permissions import Action
from rooms.procedure_models import ProcedureState, QuorumRule, RuleSet
from server.core import keys
from server.core.auth import current_user, meeting_access
from server.core.http_util import Body, int_id, query_int, read_body
from server.procedure.keys import LIVE
from server.procedure.live import When, run_change
from server.procedure.views import Emit, agenda_emit, attendance_emit, snapshot

routes = web.RouteTableDef()
Result = tuple[dict[str, Any], list[Emit]]


class NewItem(Body):
    title: str = Field(max_length=1000)
    planned_minutes: int = 0
    presenter_user_id: int | None = None
    presenter_name: str = Field(default="", max_length=1000)
    position: int | None = None


class ItemEdit(Body):
    title: str | None = Field(default=None, max_length=1000)
    planned_minutes: int | None = None
    presenter_user_id: int | None = None
    presenter_name: str | None = Field(default=None, max_length=1000)


class Move(Body):
    position: int


class DocumentLink(Body):
    document_id: int


class Settings(Body):
    quorum_rule: QuorumRule | None = None  # None: the rule set's (or unchanged)
    rule_set: RuleSet | None = None  # whose working rules: council, committee, other


QUORUM_OF = procedure.QUORUM_OF  # shared/DOMAIN.md


class Seats(Body):
    seats: int


class Conclusions(Body):
    text: str = Field(max_length=minutes.MAX_CONCLUSIONS + 1000)


class Receipt(Body):
    receipt: str = Field(max_length=64)


def _typeset_minutes(data: MinutesData) -> bytes:
    """In the renderer thread: PyMuPDF is imported there, at the first minutes, not by
    every server process at start (docs/architecture.md (Start-up))."""
    from documents.minutes import render_minutes
    return render_minutes(data)


def _uid(access: MeetingAccess) -> int:
    assert access.user.id is not None
    return access.user.id


def _item(item: agenda.AgendaItem) -> dict[str, Any]:
    return {"id": item.id, "position": item.position, "title": item.title,
            "planned_minutes": item.planned_minutes,
            "presenter_user_id": item.presenter_user_id, "presenter": item.presenter_name}


AgendaEdit = Callable[[AsyncSession, ProcedureState], Awaitable[dict[str, Any]]]


async def _agenda_change(request: web.Request, kind: str, apply: AgendaEdit,
                         status: int = 200) -> web.Response:
    """Run an agenda edit (edit_agenda, meeting not closed), log it, push agenda:changed."""
    meeting_id = int_id(request, "meeting_id")

    async def change(s: AsyncSession, a: MeetingAccess, st: ProcedureState) -> Result:
        result = await apply(s, st)
        await audit.record(s, meeting_id, _uid(a), AuditKind.agenda_changed,
                           {"change": kind, **{k: v for k, v in result.items()
                                               if k in ("id", "position", "title",
                                                        "document_id")}})
        return result, [await agenda_emit(s, st)]

    result, _ = await run_change(request.app, current_user(request), meeting_id,
                                 Action.edit_agenda, change, when=When.not_closed)
    return web.json_response(result, status=status)


@routes.get("/api/meetings/{meeting_id}/procedure")
async def get_state(request: web.Request) -> web.Response:
    async with request.app[keys.DB].session() as s:
        access = await meeting_access(s, request)
        return web.json_response(await snapshot(s, access))


@routes.get("/api/meetings/{meeting_id}/agenda")
async def get_agenda(request: web.Request) -> web.Response:
    async with request.app[keys.DB].session() as s:
        access = await meeting_access(s, request)
        state = await procedure.read_state(s, access.meeting.id)  # type: ignore[arg-type]
        return web.json_response(await agenda.agenda_view(s, state))


@routes.post("/api/meetings/{meeting_id}/agenda")
async def add_item(request: web.Request) -> web.Response:
    body = await read_body(request, NewItem)
    fields = agenda.ItemFields(body.title, body.planned_minutes, body.presenter_user_id,
                               body.presenter_name)

    async def apply(s: AsyncSession, st: ProcedureState) -> dict[str, Any]:
        return _item(await agenda.add_item(s, st.meeting_id, fields, body.position))
    return await _agenda_change(request, "added", apply, status=201)


@routes.patch("/api/meetings/{meeting_id}/agenda/{item_id}")
async def edit_item(request: web.Request) -> web.Response:
    body = await read_body(request, ItemEdit)
    item_id = int_id(request, "item_id")
    fields = agenda.ItemFields(body.title, body.planned_minutes, body.presenter_user_id,
                               body.presenter_name)

    async def apply(s: AsyncSession, st: ProcedureState) -> dict[str, Any]:
        return _item(await agenda.update_item(s, st.meeting_id, item_id, fields))
    return await _agenda_change(request, "edited", apply)


@routes.post("/api/meetings/{meeting_id}/agenda/{item_id}/move")
async def move_item(request: web.Request) -> web.Response:
    body = await read_body(request, Move)
    item_id = int_id(request, "item_id")

    async def apply(s: AsyncSession, st: ProcedureState) -> dict[str, Any]:
        ordered = await agenda.move_item(s, st.meeting_id, item_id, body.position)
        return {"id": item_id, "position": body.position, "order": [i.id for i in ordered]}
    return await _agenda_change(request, "moved", apply)


@routes.delete("/api/meetings/{meeting_id}/agenda/{item_id}")
async def remove_item(request: web.Request) -> web.Response:
    item_id = int_id(request, "item_id")

    async def apply(s: AsyncSession, st: ProcedureState) -> dict[str, Any]:
        await agenda.remove_item(s, st, item_id)
        return {"id": item_id, "removed": True}
    return await _agenda_change(request, "removed", apply)


@routes.post("/api/meetings/{meeting_id}/agenda/{item_id}/documents")
async def attach(request: web.Request) -> web.Response:
    body = await read_body(request, DocumentLink)
    item_id = int_id(request, "item_id")

    async def apply(s: AsyncSession, st: ProcedureState) -> dict[str, Any]:
        link = await agenda.attach_document(s, st.meeting_id, item_id, body.document_id,
                                            catalog.meeting_document)
        return {"id": item_id, "document_id": link.document_id, "position": link.position}
    return await _agenda_change(request, "document_attached", apply, status=201)


@routes.delete("/api/meetings/{meeting_id}/agenda/{item_id}/documents/{document_id}")
async def detach(request: web.Request) -> web.Response:
    item_id, document_id = int_id(request, "item_id"), int_id(request, "document_id")

    async def apply(s: AsyncSession, st: ProcedureState) -> dict[str, Any]:
        await agenda.detach_document(s, st.meeting_id, item_id, document_id)
        return {"id": item_id, "document_id": document_id, "removed": True}
    return await _agenda_change(request, "document_detached", apply)


@routes.put("/api/meetings/{meeting_id}/procedure/settings")
async def put_settings(request: web.Request) -> web.Response:
    body = await read_body(request, Settings)
    meeting_id = int_id(request, "meeting_id")

    async def change(s: AsyncSession, a: MeetingAccess, st: ProcedureState) -> Result:
        if body.rule_set is not None:
            st.rule_set = body.rule_set
        if body.quorum_rule is not None:
            st.quorum_rule = body.quorum_rule
        elif body.rule_set is not None:  # councils and committees: two thirds attend
            st.quorum_rule = QUORUM_OF[body.rule_set]
        s.add(st)
        data = {"quorum_rule": st.quorum_rule.value, "rule_set": st.rule_set.value}
        await audit.record(s, meeting_id, _uid(a), AuditKind.settings_changed, data)
        return data, [await attendance_emit(s, st)]
    result, _ = await run_change(request.app, current_user(request), meeting_id, Action.manage,
                                 change, when=When.not_closed)
    return web.json_response(result)


@routes.put("/api/meetings/{meeting_id}/sites/{site_id}/seats")
async def put_seats(request: web.Request) -> web.Response:
    body = await read_body(request, Seats)
    meeting_id, site_id = int_id(request, "meeting_id"), int_id(request, "site_id")

    async def change(s: AsyncSession, a: MeetingAccess, st: ProcedureState) -> Result:
        row = await attendance.set_site_seats(s, meeting_id, site_id, body.seats)
        await audit.record(s, meeting_id, _uid(a), AuditKind.settings_changed,
                           {"site_id": site_id, "seats": row.seats})
        return {"site_id": site_id, "seats": row.seats}, [await attendance_emit(s, st)]
    result, _ = await run_change(request.app, current_user(request), meeting_id, Action.manage,
                                 change, when=When.not_closed)
    return web.json_response(result)


@routes.put("/api/meetings/{meeting_id}/conclusions")
async def put_conclusions(request: web.Request) -> web.Response:
    body = await read_body(request, Conclusions)
    meeting_id = int_id(request, "meeting_id")

    async def change(s: AsyncSession, a: MeetingAccess, st: ProcedureState) -> Result:
        await minutes.set_conclusions(s, st, body.text)
        await audit.record(s, meeting_id, _uid(a), AuditKind.conclusions,
                           {"chars": len(st.conclusions)})
        return {"conclusions": st.conclusions}, [("conclusions:changed",
                                                  {"conclusions": st.conclusions})]
    result, _ = await run_change(request.app, current_user(request), meeting_id, Action.manage,
                                 change, when=When.any)
    return web.json_response(result)


@routes.get("/api/meetings/{meeting_id}/votes/{vote_id}")
async def get_vote(request: web.Request) -> web.Response:
    async with request.app[keys.DB].session() as s:
        access = await meeting_access(s, request)
        vote = await votes.get_vote(s, access.meeting.id,  # type: ignore[arg-type]
                                    int_id(request, "vote_id"))
        return web.json_response(votes.vote_dict(vote, await votes.tally(s, vote)))


@routes.post("/api/meetings/{meeting_id}/receipts/check")
async def check_receipt(request: web.Request) -> web.Response:
    body = await read_body(request, Receipt)
    async with request.app[keys.DB].session() as s:
        access = await meeting_access(s, request)
        return web.json_response(await votes.check_receipt(
            s, access.meeting.id, body.receipt, request.app[LIVE].key))  # type: ignore[arg-type]


@routes.post("/api/meetings/{meeting_id}/minutes")
async def generate_minutes(request: web.Request) -> web.Response:
    """Typeset the minutes from the meeting's record and archive them as a new version."""
    user, meeting_id = current_user(request), int_id(request, "meeting_id")
    async with request.app[keys.DB].session() as s:
        await meetings.require(s, user, meeting_id, Action.manage)
        version = await minutes.next_version(s, meeting_id)
        data = await minutes.gather(s, meeting_id, version)
    pdf = await asyncio.get_running_loop().run_in_executor(request.app[LIVE].renderer,
                                                           _typeset_minutes, data)

    async def change(s: AsyncSession, a: MeetingAccess, st: ProcedureState) -> Result:
        if await minutes.next_version(s, meeting_id) != version:
            raise Conflict("another version of the minutes was generated meanwhile; try again")
        row = await minutes.archive(s, meeting_id, a.user, pdf)
        info = minutes.version_dict(row)
        return info, [("minutes:generated", {"minutes": info})]
    result, _ = await run_change(request.app, user, meeting_id, Action.manage, change,
                                 when=When.any)
    return web.json_response(result, status=201)


@routes.get("/api/meetings/{meeting_id}/minutes")
async def list_minutes(request: web.Request) -> web.Response:
    async with request.app[keys.DB].session() as s:
        access = await meeting_access(s, request)
        return web.json_response({"versions": await minutes.versions(
            s, access.meeting.id)})  # type: ignore[arg-type]


@routes.get(r"/api/meetings/{meeting_id}/minutes/{version:(latest|[0-9]{1,9})}.pdf")
async def download_minutes(request: web.Request) -> web.Response:
    raw = request.match_info["version"]
    async with request.app[keys.DB].session() as s:
        access = await meeting_access(s, request)
        row = await minutes.get_pdf(s, access.meeting.id,  # type: ignore[arg-type]
                                    None if raw == "latest" else int_id(request, "version"))
    name = f"bien-ban-{row.meeting_id}-v{row.version}.pdf"
    return web.Response(body=row.pdf, content_type="application/pdf", headers={
        "Content-Disposition": f'attachment; filename="{name}"', "X-Content-SHA256": row.sha256,
        "Cache-Control": "private, no-store"})


@routes.get("/api/meetings/{meeting_id}/audit")
async def meeting_audit(request: web.Request) -> web.Response:
    after = query_int(request, "after", 0)
    async with request.app[keys.DB].session() as s:
        access = await meeting_access(s, request, Action.manage)
        meeting_id: int = access.meeting.id  # type: ignore[assignment]
        report = await audit.verify_meeting(s, meeting_id)
        rows = await audit.entries(s, meeting_id, after)
    return web.json_response({"chain": report.as_dict(),
                              "entries": [audit.entry_dict(e) for e in rows]})

