"""The agenda (chương trình nghị sự): ordered items, their documents, the current item."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rooms.errors import Conflict, Invalid, NotFound
from rooms.models import MeetingMember, User, utcnow
from rooms.procedure import seconds_between
from rooms.procedure_models import AgendaDocument, AgendaItem, ProcedureState, Vote

MAX_ITEMS = 200
MAX_PLANNED_MINUTES = 24 * 60


@dataclass(frozen=True)
class ItemFields:
    """What the secretary edits; None leaves a field unchanged on update."""

    title: str | None = None
    planned_minutes: int | None = None
    presenter_user_id: int | None = None
    presenter_name: str | None = None


def _clean_title(title: str) -> str:
    title = " ".join(title.split())
    if not 1 <= len(title) <= 300:
        raise Invalid("title must be 1 to 300 characters")
    return title


async def items(session: AsyncSession, meeting_id: int) -> list[AgendaItem]:
    rows = await session.exec(select(AgendaItem)
                              .where(AgendaItem.meeting_id == meeting_id,
                                     AgendaItem.removed == False)  # noqa: E712 - SQL
                              .order_by(col(AgendaItem.position), col(AgendaItem.id)))
    return list(rows.all())


async def get_item(session: AsyncSession, meeting_id: int, item_id: int) -> AgendaItem:
    """An item of this meeting; another meeting's item is not found (never revealed)."""
    item = await session.get(AgendaItem, item_id)
    if item is None or item.meeting_id != meeting_id or item.removed:
        raise NotFound(f"agenda item {item_id} not found in this meeting")
    return item


async def _check_presenter(session: AsyncSession, meeting_id: int, user_id: int) -> None:
    rows = await session.exec(select(MeetingMember).where(MeetingMember.meeting_id == meeting_id,
                                                          MeetingMember.user_id == user_id))
    if rows.first() is None:
        raise Invalid(f"presenter {user_id} is not a member of this meeting")


async def _apply(session: AsyncSession, item: AgendaItem, fields: ItemFields) -> None:
    if fields.title is not None:
        item.title = _clean_title(fields.title)
    if fields.planned_minutes is not None:
        if not 0 <= fields.planned_minutes <= MAX_PLANNED_MINUTES:
            raise Invalid(f"planned_minutes must be 0 to {MAX_PLANNED_MINUTES}")
        item.planned_minutes = fields.planned_minutes
    if fields.presenter_user_id is not None:
        await _check_presenter(session, item.meeting_id, fields.presenter_user_id)
        item.presenter_user_id = fields.presenter_user_id
    if fields.presenter_name is not None:
        name = " ".join(fields.presenter_name.split())
        if len(name) > 200:
            raise Invalid("presenter_name must be at most 200 characters")
        item.presenter_name = name


def _renumber(ordered: list[AgendaItem]) -> None:
    for n, item in enumerate(ordered, 1):
        item.position = n


async def add_item(session: AsyncSession, meeting_id: int, fields: ItemFields,
                   position: int | None = None) -> AgendaItem:
    """Insert at `position` (1-based; None or past the end appends)."""
    if fields.title is None:
        raise Invalid("title is required")
    current = await items(session, meeting_id)
    if len(current) >= MAX_ITEMS:
        raise Conflict(f"an agenda has at most {MAX_ITEMS} items")
    item = AgendaItem(meeting_id=meeting_id, position=0, title="")
    await _apply(session, item, fields)
    index = len(current) if position is None else min(max(position, 1) - 1, len(current))
    current.insert(index, item)
    _renumber(current)
    session.add_all(current)
    await session.flush()
    return item


async def update_item(session: AsyncSession, meeting_id: int, item_id: int,
                      fields: ItemFields) -> AgendaItem:
    item = await get_item(session, meeting_id, item_id)
    await _apply(session, item, fields)
    session.add(item)
    return item


async def move_item(session: AsyncSession, meeting_id: int, item_id: int,
                    position: int) -> list[AgendaItem]:
    current = await items(session, meeting_id)
    item = next((i for i in current if i.id == item_id), None)
    if item is None:
        raise NotFound(f"agenda item {item_id} not found in this meeting")
    if not 1 <= position <= len(current):
        raise Invalid(f"position must be 1 to {len(current)}")
    current.remove(item)
    current.insert(position - 1, item)
    _renumber(current)
    session.add_all(current)
    return current


async def remove_item(session: AsyncSession, state: ProcedureState, item_id: int) -> None:
    """Items that were never discussed go; others stay hidden (votes and speeches keep them)."""
    item = await get_item(session, state.meeting_id, item_id)
    if state.current_item_id == item_id:
        raise Conflict("the current item cannot be removed; move on first")
    votes = await session.exec(select(Vote.id).where(Vote.agenda_item_id == item_id))
    if votes.first() is not None or item.started_at is not None:
        raise Conflict("this item was already discussed or voted on; it cannot be removed")
    item.removed = True
    session.add(item)
    await session.flush()
    _renumber(await items(session, state.meeting_id))


async def set_current(session: AsyncSession, state: ProcedureState, item_id: int | None,
                      now: datetime | None = None) -> None:
    """Make `item_id` the current item (None: no current item); time spent is accumulated."""
    now = now or utcnow()
    if item_id is not None:
        new = await get_item(session, state.meeting_id, item_id)
    if state.current_item_id == item_id:
        raise Conflict("that is already the current item")
    if state.current_item_id is not None:
        old = await session.get(AgendaItem, state.current_item_id)
        if old is not None:
            old.spent_seconds += seconds_between(state.current_since, now)
            session.add(old)
    state.current_item_id, state.current_since = item_id, (now if item_id is not None else None)
    if item_id is not None:
        if new.started_at is None:
            new.started_at = now
        session.add(new)
    session.add(state)


DocumentCheck = Callable[[AsyncSession, int, int], Awaitable[object]]
"""`check(session, meeting_id, document_id)` raises NotFound unless the document belongs to
the meeting: documents.catalog.meeting_document, passed in because documents depend on rooms,
not the other way round. AgendaDocument.document_id has no foreign key: this is the only
check."""


async def attach_document(session: AsyncSession, meeting_id: int, item_id: int,
                          document_id: int, check_document: DocumentCheck) -> AgendaDocument:
    item = await get_item(session, meeting_id, item_id)
    await check_document(session, meeting_id, document_id)
    rows = await session.exec(select(AgendaDocument).where(
        AgendaDocument.agenda_item_id == item.id, AgendaDocument.document_id == document_id))
    if rows.first() is not None:
        raise Conflict("that document is already attached to this item")
    count = await session.exec(select(AgendaDocument.id)
                               .where(AgendaDocument.agenda_item_id == item.id))
    link = AgendaDocument(agenda_item_id=item.id,  # type: ignore[arg-type]
                          document_id=document_id, position=len(count.all()) + 1)
    session.add(link)
    await session.flush()
    return link


async def detach_document(session: AsyncSession, meeting_id: int, item_id: int,
                          document_id: int) -> None:
    item = await get_item(session, meeting_id, item_id)
    rows = await session.exec(select(AgendaDocument).where(
        AgendaDocument.agenda_item_id == item.id, AgendaDocument.document_id == document_id))
    link = rows.first()
    if link is None:
        raise NotFound(f"document {document_id!r} is not attached to this item")
    await session.delete(link)


async def agenda_view(session: AsyncSession, state: ProcedureState,
                      now: datetime | None = None) -> dict[str, Any]:
    """The agenda as every member sees it, with the current item's timing."""
    now = now or utcnow()
    listed = await items(session, state.meeting_id)
    ids = [i.id for i in listed]
    docs: dict[int, list[int]] = {}
    if ids:
        rows = await session.exec(select(AgendaDocument)
                                  .where(col(AgendaDocument.agenda_item_id).in_(ids))
                                  .order_by(col(AgendaDocument.position)))
        for d in rows.all():
            docs.setdefault(d.agenda_item_id, []).append(d.document_id)
    presenters: dict[int, str] = {}
    for i in listed:
        if i.presenter_user_id is not None and i.presenter_user_id not in presenters:
            user = await session.get(User, i.presenter_user_id)
            presenters[i.presenter_user_id] = user.full_name if user else "?"
    out = []
    for i in listed:
        running = seconds_between(state.current_since, now) if i.id == state.current_item_id else 0
        out.append({
            "id": i.id, "position": i.position, "title": i.title,
            "planned_minutes": i.planned_minutes, "presenter_user_id": i.presenter_user_id,
            "presenter": i.presenter_name or presenters.get(i.presenter_user_id or 0, ""),
            "documents": docs.get(i.id or 0, []), "spent_seconds": i.spent_seconds + running,
            "started": i.started_at is not None,
        })
    current = None
    if state.current_item_id is not None:
        item = next((i for i in listed if i.id == state.current_item_id), None)
        if item is not None:  # `since` None: the meeting is paused, the clock stands still
            since = state.current_since
            elapsed = item.spent_seconds + seconds_between(since, now)
            current = {"item_id": item.id, "since": since.isoformat() if since else None,
                       "spent_before_seconds": item.spent_seconds, "elapsed_seconds": elapsed,
                       "remaining_seconds": item.planned_minutes * 60 - elapsed
                       if item.planned_minutes else None}
    return {"items": out, "current": current, "server_time": now.isoformat()}
