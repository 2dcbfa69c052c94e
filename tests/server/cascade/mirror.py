"""A node's mirror of the owner's meeting, in one server, for tests that hand its topics
the owner's journal entries directly (no tree, no link)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from sqlmodel import col, select

from rooms.cascade_models import CascadeReport
from rooms.models import Meeting
from server.cascade.state import MeetingState
from server.cascade.topic.votes import TALLY
from server.core import keys


async def ward_mirror(app: web.Application, meeting_id: int, key: str,
                      *rows: Any) -> MeetingState:
    """The meeting marked as the mirror of the owner's meeting `key` (with `rows` stored in
    the same commit), and the ward's meeting state whose pushes go nowhere."""
    async with app[keys.DB].session() as s:
        meeting = await s.get(Meeting, meeting_id)
        assert meeting is not None
        meeting.cascade_key = key
        s.add(meeting)
        s.add_all(rows)
        await s.commit()

    async def nowhere(*_: Any) -> None:
        return None
    return MeetingState(app[keys.DB], "ward", nowhere, set)


async def tallies(app: web.Application) -> list[dict[str, Any]]:
    """The vote snapshots in the node's outbox, oldest first."""
    async with app[keys.DB].session() as s:
        rows = (await s.exec(select(CascadeReport).where(CascadeReport.topic == TALLY)
                             .order_by(col(CascadeReport.n)))).all()
    return [json.loads(r.data) for r in rows]
