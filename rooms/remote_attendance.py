"""The attendance of other cascade nodes' people, as the meeting's owner keeps it for its
minutes (docs/cascade.md, "Minutes and audit at the owner"): one row per meeting and node,
the node's latest list (names, status, site), replaced by each newer revision. The quorum
still counts each child's headcount (rooms/attendance.py); this is the record of who."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import Column, Text
from sqlmodel import Field, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rooms.models import utcnow


class RemoteAttendance(SQLModel, table=True):
    meeting_id: int = Field(foreign_key="meeting.id", primary_key=True)
    origin: str = Field(primary_key=True, max_length=64)
    via: str = Field(max_length=64)
    revision: int = 0
    # [{"user", "name", "status": "in_person"|"online"|"absent"|null, "site", "reason"}]
    people_json: str = Field(default="[]", sa_column=Column(Text, nullable=False))
    at: datetime = Field(default_factory=utcnow)


async def people(session: AsyncSession, meeting_id: int) -> list[tuple[str, dict[str, Any]]]:
    """(node, person) for every node's people, nodes in name order."""
    rows = await session.exec(select(RemoteAttendance)
                              .where(RemoteAttendance.meeting_id == meeting_id)
                              .order_by(col(RemoteAttendance.origin)))
    return [(r.origin, p) for r in rows.all() for p in json.loads(r.people_json)]
