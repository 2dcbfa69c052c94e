"""Meetings across cascade nodes, from the database.

A meeting is owned by the node where it was scheduled; its link key is
``"<owner node unit>/<owner's meeting id>"``. A parent offers each child the meetings it owns
or mirrors that are scheduled or open and invite that child (rooms/meeting_nodes.py; a
mirror carries its owner's list on); a child mirrors them as local meetings (same
title, time and status, ``Meeting.cascade_key`` = the key) to which this node's sites
(meeting rooms) and secretaries are invited; the secretaries invite local delegates. Local
people join on this node only. A mirror whose key the parent stops offering is closed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlmodel import col, select

from rooms import attendance, meeting_nodes
from rooms.db import Database
from rooms.errors import Invalid
from rooms.models import (
    Meeting,
    MeetingMember,
    MeetingRole,
    MeetingStatus,
    Role,
    Site,
    Unit,
    User,
    utcnow,
)
from rooms.procedure_models import RemoteHeadcount
from server.cascade_link import MeetingDirectory

log = logging.getLogger(__name__)
LIVE = (MeetingStatus.scheduled, MeetingStatus.open)
MAX_OFFERED = 500


class Offered(BaseModel):
    """One meeting a parent offers (validated: it comes from another server)."""

    model_config = ConfigDict(extra="ignore")
    key: str = Field(min_length=3, max_length=160, pattern=r"^[^/\s]+/\d+$")
    title: str = Field(min_length=1, max_length=300)
    description: str = Field(default="", max_length=4000)
    starts_at: datetime
    status: MeetingStatus
    nodes: list[str] = Field(default_factory=list, max_length=meeting_nodes.MAX_NODES)


class Reported(BaseModel):
    """One meeting's headcount as a child reports it (validated: from another server)."""

    model_config = ConfigDict(extra="ignore")
    key: str = Field(min_length=3, max_length=160)
    members: int = Field(ge=0, le=attendance.MAX_HEADCOUNT)
    present: int = Field(ge=0, le=attendance.MAX_HEADCOUNT)


class DbDirectory(MeetingDirectory):
    def __init__(self, db: Database, unit: str,
                 on_attendance: Callable[[int], Awaitable[None]] | None = None) -> None:
        self.db = db
        self.unit = unit
        self.on_attendance = on_attendance  # a child's headcount for this meeting changed

    def key_of(self, meeting: Meeting) -> str:
        return meeting.cascade_key or f"{self.unit}/{meeting.id}"

    async def router_for(self, key: str) -> str | None:
        owner, _, number = key.rpartition("/")
        async with self.db.session() as s:
            if owner == self.unit:
                meeting = await s.get(Meeting, int(number)) if number.isdigit() else None
                if meeting is not None and meeting.cascade_key is not None:
                    meeting = None  # a mirror is reached by its owner's key only
            else:
                meeting = (await s.exec(select(Meeting).where(Meeting.cascade_key == key))).first()
        if meeting is None or meeting.status not in LIVE:
            return None
        return str(meeting.id)

    async def offered(self, child: str) -> list[dict[str, Any]]:
        """The live meetings (own or mirrored) that invite `child`, with their invited
        nodes so the child can pass them on."""
        async with self.db.session() as s:
            invited = await meeting_nodes.meetings_offered_to(s, child)
            rows = await s.exec(select(Meeting).where(col(Meeting.status).in_(LIVE),
                                                      col(Meeting.id).in_(invited))
                                .order_by(col(Meeting.starts_at)).limit(MAX_OFFERED))
            return [{"key": self.key_of(m), "title": m.title, "description": m.description,
                     "starts_at": m.starts_at.isoformat(), "status": m.status.value,
                     "nodes": await meeting_nodes.invited_nodes(s, m.id)}  # type: ignore[arg-type]
                    for m in rows.all()]

    async def mirror(self, offered: list[dict[str, Any]]) -> None:
        entries: dict[str, Offered] = {}
        for raw in offered[:MAX_OFFERED]:
            try:
                entry = Offered.model_validate(raw)
            except ValidationError as exc:
                log.warning("cascade: ignoring a malformed offered meeting: %s",
                            exc.errors()[0]["msg"])
                continue
            if not entry.key.startswith(f"{self.unit}/"):  # our own meetings never mirror
                entries[entry.key] = entry
        async with self.db.session() as s:
            mirrors = {m.cascade_key: m for m in (await s.exec(
                select(Meeting).where(col(Meeting.cascade_key).is_not(None)))).all()
                if m.cascade_key}
            host = (await s.exec(select(Unit).where(col(Unit.parent_id).is_(None))
                                 .order_by(col(Unit.id)))).first()
            changed = False
            for key, entry in entries.items():
                meeting = mirrors.get(key)
                if meeting is None:
                    if host is None or host.id is None or entry.status is MeetingStatus.closed:
                        continue
                    meeting = Meeting(title=entry.title, description=entry.description,
                                      unit_id=host.id, status=entry.status,
                                      starts_at=entry.starts_at, cascade_key=key)
                    s.add(meeting)
                    await s.flush()
                    await self._invite_local(s, meeting)
                    log.info("cascade: mirroring meeting %s as %s", key, meeting.id)
                    changed = True
                elif meeting.status is not MeetingStatus.closed:
                    changed |= _update(meeting, entry.title, entry.description,
                                       entry.starts_at, entry.status)
                else:
                    continue
                assert meeting.id is not None
                try:  # the owner's invitation list, passed on to our children
                    changed |= await meeting_nodes.set_invited_nodes(s, meeting.id, entry.nodes)
                except Invalid as exc:
                    log.warning("cascade: meeting %s: %s", key, exc)
            for key, meeting in mirrors.items():
                if key not in entries and meeting.status is not MeetingStatus.closed:
                    changed |= _update(meeting, meeting.title, meeting.description,
                                       meeting.starts_at, MeetingStatus.closed)
            if changed:
                await s.commit()

    async def headcounts(self) -> list[dict[str, Any]]:
        async with self.db.session() as s:
            rows = await s.exec(select(Meeting).where(col(Meeting.cascade_key).is_not(None),
                                                      Meeting.status == MeetingStatus.open))
            out = []
            for meeting in rows.all():
                assert meeting.id is not None
                count = await attendance.subtree_headcount(s, meeting.id)
                out.append({"key": meeting.cascade_key, "members": count.members,
                            "present": count.present})
            return out

    async def report(self, child: str, counts: list[dict[str, Any]]) -> None:
        """Replace what `child` reported: its subtree's headcount per meeting, kept in the
        database (RemoteHeadcount) so every process's quorum counts it."""
        wanted: dict[int, attendance.Headcount] = {}
        for raw in counts[:MAX_OFFERED]:
            try:
                entry = Reported.model_validate(raw)
                count = attendance.Headcount(child, entry.members, entry.present)
            except (ValidationError, ValueError) as exc:
                log.warning("cascade: ignoring a headcount from %s: %s", child, exc)
                continue
            router = await self.router_for(entry.key)
            if router is not None:
                wanted[int(router)] = count
        changed: list[int] = []
        async with self.db.session() as s:
            rows = await s.exec(select(RemoteHeadcount).where(RemoteHeadcount.node == child))
            for meeting_id in {r.meeting_id for r in rows.all()} | set(wanted):
                if await attendance.set_remote_headcount(s, meeting_id, child,
                                                         wanted.get(meeting_id)):
                    changed.append(meeting_id)
        for meeting_id in changed:
            if self.on_attendance is not None:
                await self.on_attendance(meeting_id)

    @staticmethod
    async def _invite_local(s: Any, meeting: Meeting) -> None:
        """This node's secretaries (to invite its people) and its sites (its meeting
        rooms: their operators connect the room to the meeting)."""
        assert meeting.id is not None
        rows = await s.exec(select(User).where(User.role == Role.secretary,
                                               col(User.disabled).is_(False)))
        for user in rows.all():
            s.add(MeetingMember(meeting_id=meeting.id, user_id=user.id,
                                role=MeetingRole.secretary))
        for site in (await s.exec(select(Site).where(col(Site.active).is_(True)))).all():
            s.add(MeetingMember(meeting_id=meeting.id, site_id=site.id,
                                role=MeetingRole.site_operator))


def _update(meeting: Meeting, title: str, description: str, starts_at: datetime,
            status: MeetingStatus) -> bool:
    """Apply the owner's values; True if anything changed. A closed mirror stays closed."""
    before = (meeting.title, meeting.description, meeting.starts_at, meeting.status)
    meeting.title, meeting.description, meeting.starts_at = title, description, starts_at
    if status is not meeting.status and _ORDER[status] > _ORDER[meeting.status]:
        meeting.status = status
        if status is MeetingStatus.open:
            meeting.opened_at = utcnow()
        if status is MeetingStatus.closed:
            meeting.closed_at = utcnow()
    return before != (meeting.title, meeting.description, meeting.starts_at, meeting.status)


_ORDER = {MeetingStatus.scheduled: 0, MeetingStatus.open: 1, MeetingStatus.closed: 2}
