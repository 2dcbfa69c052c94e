"""socket.io events of the documents: live channel, annotation ops and resync, presenter
follow and laser pointer. One small handler per event, each with its own schema; every
handler checks access against the database."""

from __future__ import annotations

import math
from typing import Any

from pydantic import Field

from documents import catalog
from documents.annotations import DEFAULT_LIMITS
from rooms import meetings
from rooms.errors import Conflict, Invalid
from rooms.permissions import Action
from server.core import keys
from server.core.realtime import EventContext, EventSchema, Realtime, meeting_room
from server.documents.annotation_cache import StaleVersion
from server.documents.annotation_push import doc_room
from server.documents.annotations import Viewer
from server.documents.events import AnnotationAccepted, PresenterMoved, PresenterPointed
from server.documents.keys import DOCUMENTS
from server.documents.versions import carry_stale_add

MAX_PAGES = 10_000


class DocumentRef(EventSchema):
    document_id: int


class OpIn(EventSchema):
    document_id: int
    version: int
    op: dict[str, Any]


class SnapshotIn(EventSchema):
    document_id: int
    version: int
    pages: list[int] | None = Field(default=None, max_length=MAX_PAGES)


class SinceIn(EventSchema):
    document_id: int
    version: int
    page: int
    after_seq: int = Field(ge=0)


class PresentIn(EventSchema):
    document_id: int
    page: int
    zoom: float = Field(ge=0.1, le=10.0)
    scroll_x: float = Field(ge=0.0, le=1.0)
    scroll_y: float = Field(ge=0.0, le=1.0)
    take_over: bool = False  # replace another user's presentation instead of being refused


class PointerIn(EventSchema):
    document_id: int
    page: int
    x: float | None
    y: float | None


class MeetingRef(EventSchema):
    meeting_id: int


async def _grant(ctx: EventContext, document_id: int,
                 action: Action = Action.view) -> catalog.DocumentGrant:
    async with ctx.db.session() as s:
        return await catalog.require_document(s, ctx.user, document_id, action)


def _viewer(grant: catalog.DocumentGrant) -> Viewer:
    return Viewer(grant.user_id, grant.is_presenter)


def _current(grant: catalog.DocumentGrant, version: int) -> None:
    if version != grant.document.version:
        raise StaleVersion(f"version {version} is not the current version "
                           f"({grant.document.version}); take a new snapshot")


async def _page_sizes(ctx: EventContext, document_id: int, version: int
                      ) -> list[tuple[float, float]]:
    return await ctx.app[DOCUMENTS].annotations.page_sizes(document_id, version)


def _on_page(sizes: list[tuple[float, float]], page: int, x: float | None = None,
             y: float | None = None) -> None:
    if not 0 <= page < len(sizes):
        raise Invalid(f"page {page} not in 0..{len(sizes) - 1}", code="bad_page")
    if x is None or y is None:
        return
    w, h, tol = *sizes[page], DEFAULT_LIMITS.tolerance
    if not (math.isfinite(x) and math.isfinite(y) and -tol <= x <= w + tol
            and -tol <= y <= h + tol):
        raise Invalid(f"({x:.1f}, {y:.1f}) lies outside the page", code="out_of_page")


def register(rt: Realtime) -> None:
    register_channel(rt)
    register_annotations(rt)
    register_presenter(rt)


def register_channel(rt: Realtime) -> None:
    @rt.on("document:subscribe", DocumentRef)
    async def subscribe(ctx: EventContext, p: DocumentRef) -> dict[str, Any]:
        grant = await _grant(ctx, p.document_id)
        async with ctx.db.session() as s:
            versions = (await catalog.versions_of(s, [p.document_id]))[p.document_id]
        presenters = grant.is_presenter
        await ctx.sio.leave_room(ctx.sid, doc_room(p.document_id, not presenters))
        await ctx.sio.enter_room(ctx.sid, doc_room(p.document_id, presenters))
        return catalog.details_dict(grant, versions)

    @rt.on("document:unsubscribe", DocumentRef)
    async def unsubscribe(ctx: EventContext, p: DocumentRef) -> dict[str, Any]:
        for presenters in (False, True):
            await ctx.sio.leave_room(ctx.sid, doc_room(p.document_id, presenters))
        return {"left": p.document_id}


def register_annotations(rt: Realtime) -> None:
    @rt.on("annotation:op", OpIn)
    async def op(ctx: EventContext, p: OpIn) -> dict[str, Any]:
        grant = await _grant(ctx, p.document_id, Action.annotate)
        version, raw = p.version, p.op
        if version != grant.document.version:
            # Ink drawn on the version a tablet showed when a new one was published (in
            # flight, or queued offline) is carried onto the page with the same text.
            async with ctx.db.session() as s:
                carried = await carry_stale_add(s, grant.document, version, raw)
            if carried is None:  # refused: stale_version, nothing changed
                raise StaleVersion(f"version {version} is not the current version "
                                   f"({grant.document.version}); take a new snapshot")
            version, raw = grant.document.version, carried
        hub = ctx.app[DOCUMENTS].annotations
        result, event = await hub.apply(p.document_id, version, raw, _viewer(grant), ctx.sid)
        record = result.record
        if not result.replayed:
            await ctx.app[keys.BUS].publish(AnnotationAccepted(p.document_id, version,
                                                               grant.user_id, record))
        return {"document_id": p.document_id, "version": version, "op_id": record.op_id,
                "page": record.page, "seq": record.seq, "replayed": result.replayed,
                "event": event}

    @rt.on("annotation:snapshot", SnapshotIn)
    async def snapshot(ctx: EventContext, p: SnapshotIn) -> dict[str, Any]:
        grant = await _grant(ctx, p.document_id)
        _current(grant, p.version)
        hub = ctx.app[DOCUMENTS].annotations
        pages = await hub.snapshot(p.document_id, p.version, _viewer(grant), p.pages)
        return {"document_id": p.document_id, "version": p.version, "pages": pages}

    @rt.on("annotation:since", SinceIn)
    async def since(ctx: EventContext, p: SinceIn) -> dict[str, Any]:
        grant = await _grant(ctx, p.document_id)
        _current(grant, p.version)
        hub = ctx.app[DOCUMENTS].annotations
        events, seq = await hub.since(p.document_id, p.version, _viewer(grant), p.page,
                                      p.after_seq)
        return {"document_id": p.document_id, "version": p.version, "page": p.page,
                "seq": seq, "events": events}


def register_presenter(rt: Realtime) -> None:
    @rt.on("present:update", PresentIn)
    async def update(ctx: EventContext, p: PresentIn) -> dict[str, Any]:
        grant = await _grant(ctx, p.document_id, Action.present)
        if not grant.document.published:
            raise Conflict("publish the document before presenting it", code="not_published")
        version = grant.document.version
        _on_page(await _page_sizes(ctx, p.document_id, version), p.page)
        board = ctx.app[DOCUMENTS].presenters
        state = await board.update(grant.document.meeting_id, user_id=grant.user_id,
                                   name=ctx.user.full_name, document_id=p.document_id,
                                   version=version, page=p.page, zoom=p.zoom,
                                   scroll_x=p.scroll_x, scroll_y=p.scroll_y,
                                   take_over=p.take_over)
        await ctx.sio.emit("present:state", state, room=meeting_room(grant.document.meeting_id))
        await ctx.app[keys.BUS].publish(PresenterMoved(grant.document.meeting_id, state))
        return state

    @rt.on("present:pointer", PointerIn)
    async def pointer(ctx: EventContext, p: PointerIn) -> dict[str, Any]:
        grant = await _grant(ctx, p.document_id, Action.present)
        meeting_id = grant.document.meeting_id
        board = ctx.app[DOCUMENTS].presenters
        presentation = await board.presenting(meeting_id, grant.user_id, p.document_id)
        _on_page(await _page_sizes(ctx, p.document_id, presentation.version), p.page, p.x, p.y)
        if not board.pointer_allowed(meeting_id, grant.user_id):
            return {"sent": False}
        await ctx.sio.emit("present:pointer", {"meeting_id": meeting_id,
                                               "document_id": p.document_id, "page": p.page,
                                               "x": p.x, "y": p.y},
                           room=meeting_room(meeting_id), skip_sid=ctx.sid)
        await ctx.app[keys.BUS].publish(PresenterPointed(meeting_id, p.document_id, p.page,
                                                         p.x, p.y))
        return {"sent": True}

    @rt.on("present:stop", MeetingRef)
    async def stop(ctx: EventContext, p: MeetingRef) -> dict[str, Any]:
        async with ctx.db.session() as s:
            await meetings.require(s, ctx.user, p.meeting_id, Action.present)
        state = await ctx.app[DOCUMENTS].presenters.stop(p.meeting_id)
        await ctx.sio.emit("present:state", state, room=meeting_room(p.meeting_id))
        await ctx.app[keys.BUS].publish(PresenterMoved(p.meeting_id, state))
        return state

    @rt.on("present:get", MeetingRef)
    async def get(ctx: EventContext, p: MeetingRef) -> dict[str, Any]:
        async with ctx.db.session() as s:
            await meetings.require(s, ctx.user, p.meeting_id)
        return await ctx.app[DOCUMENTS].presenters.get(p.meeting_id)
