"""`MeetingState`: the one object through which topic modules (server/cascade/topic/) send
and receive a meeting's state across the tree: `publish` at the owner (the journal, down),
`report` at every other node (the outbox, up), `register` for the topics. It also maps a
meeting's key to its local id both ways and tells which invited nodes are reachable now
(for a chair about to close a vote).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rooms import meeting_nodes
from rooms.db import Database
from rooms.models import Meeting, MeetingStatus
from server.cascade.journal import Journal, Push
from server.cascade.reports import REFUSED, Reports
from server.cascade.schemas import NodeSchema
from server.cascade.topics import Entry, Report, Topic, Topics

log = logging.getLogger(__name__)
LIVE = (MeetingStatus.scheduled, MeetingStatus.open)


class RefusedData(NodeSchema):
    """`report.refused`: the owner refused a report that came from further down."""

    id: str
    origin: str
    code: str
    message: str


class NotHere(Exception):
    """publish at a node that does not own the meeting, report at the one that does."""


class MeetingState:
    def __init__(self, db: Database, unit: str, push: Push,
                 reachable: Callable[[], set[str]]) -> None:
        self.db = db
        self.unit = unit
        self.topics = Topics()
        self._keys: dict[int, str] = {}
        self._ids: dict[str, int] = {}
        self.journal = Journal(db, self.topics, push, self.meeting_of)
        self.reports = Reports(db, unit, self.topics, self.meeting_of, self.journal.append)
        self._reachable = reachable
        self.topics.register(Topic(REFUSED, RefusedData, "down", apply=self._refused))

    def register(self, topic: Topic) -> None:
        self.topics.register(topic)

    # -- keys ----------------------------------------------------------------------------------
    def owns(self, key: str) -> bool:
        return key.startswith(f"{self.unit}/")

    async def key_of(self, meeting_id: int) -> str | None:
        if meeting_id not in self._keys:
            async with self.db.session() as s:
                meeting = await s.get(Meeting, meeting_id)
            if meeting is None:
                return None
            self._remember(meeting_id, meeting.cascade_key or f"{self.unit}/{meeting_id}")
        return self._keys[meeting_id]

    async def meeting_of(self, key: str) -> int | None:
        """The local meeting of a key: our own by id, a mirror by its cascade key."""
        if key not in self._ids:
            owner, _, number = key.rpartition("/")
            async with self.db.session() as s:
                if owner == self.unit:
                    meeting = await s.get(Meeting, int(number)) if number.isdigit() else None
                    if meeting is not None and meeting.cascade_key is not None:
                        meeting = None
                else:
                    meeting = (await s.exec(select(Meeting)
                                            .where(Meeting.cascade_key == key))).first()
            if meeting is None or meeting.id is None:
                return None
            self._remember(meeting.id, key)
        return self._ids[key]

    def _remember(self, meeting_id: int, key: str) -> None:
        self._keys[meeting_id], self._ids[key] = key, meeting_id

    # -- down and up ------------------------------------------------------------------------------
    async def publish(self, meeting_id: int, topic: str, data: dict[str, Any],
                      durable: bool = True, live_first: bool = False) -> Entry | None:
        """At the owner: journal (committed) and push to the children. None if the
        meeting is not ours or invites no node (nothing to tell). `live_first`: pushed live
        (never stored) before it is journaled, for a topic whose applier takes the same data
        twice as once (the presenter: it carries its own seq)."""
        key = await self.key_of(meeting_id)
        if key is None or not self.owns(key):
            return None
        async with self.db.session() as s:
            if not await meeting_nodes.node_seats(s, meeting_id):
                return None
        if not durable or live_first:
            await self.journal.ephemeral(key, topic, data)
        if not durable:
            return None
        return await self.journal.append(key, topic, data)

    async def report(self, meeting_id: int, topic: str, data: dict[str, Any],
                     s: AsyncSession | None = None, ahead: bool = False) -> Report:
        """At a node that mirrors the meeting: stored here (committed) when this returns,
        delivered towards the owner in the background. With `s`, stored by the caller's
        commit of `s` instead, together with the change that made the report; `ahead`, on
        its way up beside that commit (`Reports.add`)."""
        key = await self.key_of(meeting_id)
        if key is None or self.owns(key):
            raise NotHere(f"meeting {meeting_id} is not a mirror here")
        if s is not None:
            return self.reports.add(s, key, topic, data, ahead=ahead)
        return await self.reports.store(key, topic, data)

    async def _refused(self, meeting_id: int, entry: Entry) -> None:
        if entry.data["origin"] == self.unit:
            await self.reports.refused_here(entry)

    # -- reachability --------------------------------------------------------------------------------
    async def mirrors(self) -> list[str]:
        """The keys of the live meetings mirrored here (their journals are followed)."""
        async with self.db.session() as s:
            rows = await s.exec(select(Meeting.cascade_key).where(
                col(Meeting.cascade_key).is_not(None), col(Meeting.status).in_(LIVE)))
            return sorted(k for k in rows.all() if k)

    async def sites(self, meeting_id: int) -> dict[str, Any]:
        """Every node the meeting invites, with whether it is linked (directly or below a
        child) now, the reports this node holds for the meeting, not yet delivered, and
        those refused for good on their way (a ballot that came after its vote closed)."""
        key = await self.key_of(meeting_id)
        async with self.db.session() as s:
            invited = await meeting_nodes.node_seats(s, meeting_id)
        reachable = self._reachable()
        states = await self.reports.states(key) if key else {}
        return {"key": key, "held_reports": states.get("pending", 0),
                "refused_reports": states.get("refused", 0),
                "sites": [{"unit": unit, "seats": seats, "reachable": unit in reachable}
                          for unit, seats in invited.items()]}
