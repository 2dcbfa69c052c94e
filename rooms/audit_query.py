"""Reading the audit log: entries filtered by meeting, kind and time, for the administrators'
audit page and its CSV export (server/admin/pages.py). The chain itself: rooms/audit.py."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rooms.models import Meeting, User
from rooms.procedure_models import AuditEntry

PAGE_LIMIT = 500  # rows shown on the page; the export has no limit


@dataclass(frozen=True)
class AuditFilter:
    meeting_id: int | None = None
    kind: str | None = None
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive


@dataclass(frozen=True)
class AuditRow:
    entry: AuditEntry
    meeting_title: str
    actor_name: str | None


async def entries(session: AsyncSession, where: AuditFilter, limit: int | None = PAGE_LIMIT,
                  newest_first: bool = True) -> list[AuditRow]:
    query = (select(AuditEntry, Meeting.title, User.full_name)
             .join(Meeting, col(Meeting.id) == AuditEntry.meeting_id)
             .join(User, col(User.id) == AuditEntry.actor_id, isouter=True))
    if where.meeting_id is not None:
        query = query.where(AuditEntry.meeting_id == where.meeting_id)
    if where.kind:
        query = query.where(AuditEntry.kind == where.kind)
    if where.since is not None:
        query = query.where(col(AuditEntry.at) >= where.since)
    if where.until is not None:
        query = query.where(col(AuditEntry.at) < where.until)
    order = (col(AuditEntry.at).desc(), col(AuditEntry.id).desc()) if newest_first else (
        col(AuditEntry.meeting_id), col(AuditEntry.seq))
    query = query.order_by(*order)
    if limit is not None:
        query = query.limit(limit)
    rows = await session.exec(query)
    return [AuditRow(entry, title, actor) for entry, title, actor in rows.all()]


async def kinds(session: AsyncSession) -> list[str]:
    """Every kind recorded so far (the page's action filter)."""
    rows = await session.exec(select(AuditEntry.kind).distinct().order_by(col(AuditEntry.kind)))
    return list(rows.all())
