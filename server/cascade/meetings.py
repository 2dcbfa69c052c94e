"""Meetings across cascade nodes, from the database.

A meeting is owned by the node where it was scheduled; its link key is
``"<owner node unit>/<owner's meeting id>"``. A parent offers each child the meetings it owns
or mirrors that are scheduled or open and invite that child (rooms/meeting_nodes.py; a
mirror carries its owner's list on); a child mirrors them as local meetings (same
title, time and status, ``Meeting.cascade_key`` = the key) to which this node's sites
(meeting rooms) and secretaries are invited; the secretaries invite local delegates. Local
people join on this node only. A mirror whose key the parent stops offering is closed; it
opens again only when its owner reopened the meeting: each offered meeting carries how many
times its owner reopened it (`reopened`), and a closed mirror offered with a higher count
than it last followed reopens (`on_reopened`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import case
from sqlalchemy.orm import aliased
from sqlmodel import col, func, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rooms import attendance, audit, meeting_nodes
from rooms.db import Database
from rooms.errors import DomainError, Invalid
from rooms.meeting_state import MeetingAudit
from rooms.models import (
    Meeting,
    MeetingMember,
    MeetingNode,
    MeetingRole,
    MeetingStatus,
    Role,
    Site,
    Unit,
    User,
    utcnow,
)
from rooms.procedure_models import AuditEntry, RemoteHeadcount
from rooms.remote_floor import CascadeRef, ref_get, ref_put
from server.cascade.directory import MeetingDirectory
from server.cascade.schemas import HeadcountEntry, NodeError
from server.core.http_util import as_id

log = logging.getLogger(__name__)
LIVE = (MeetingStatus.scheduled, MeetingStatus.open)
MAX_OFFERED = 500
REOPENED = "reopened"  # CascadeRef at a mirror: the owner's reopen count it last followed


class Offered(BaseModel):
    """One meeting a parent offers (validated: it comes from another server)."""

    model_config = ConfigDict(extra="ignore")
    key: str = Field(min_length=3, max_length=160, pattern=r"^[^/\s]+/\d+$")
    title: str = Field(min_length=1, max_length=300)
    description: str = Field(default="", max_length=4000)
    starts_at: datetime
    status: MeetingStatus
    nodes: list[str] = Field(default_factory=list, max_length=meeting_nodes.MAX_NODES)
    # Seats per invited node (a parent of an older version sends none: every node gets 0).
    seats: dict[str, int] = Field(default_factory=dict, max_length=meeting_nodes.MAX_NODES)
    # How many times the owner reopened it (a parent of an older version sends none: 0).
    reopened: int = Field(default=0, ge=0, le=1_000_000)


class DbDirectory(MeetingDirectory):
    def __init__(self, db: Database, unit: str,
                 on_attendance: Callable[[int], Awaitable[None]] | None = None,
                 on_closed: Callable[[int], Awaitable[None]] | None = None,
                 on_reopened: Callable[[int, str, int], Awaitable[None]] | None = None
                 ) -> None:
        self.db = db
        self.unit = unit
        self.on_attendance = on_attendance  # a child's headcount for this meeting changed
        self.on_closed = on_closed  # a mirror closed (its owner closed it, or stopped offering)
        # A closed mirror's owner reopened it: (mirror id, key, the owner's reopen count).
        self.on_reopened = on_reopened

    def key_of(self, meeting: Meeting) -> str:
        return meeting.cascade_key or f"{self.unit}/{meeting.id}"

    def _named(self, keys: set[str], live: bool = True) -> tuple[Any, dict[int, str]] | None:
        """The condition on Meeting for the live meetings here that `keys` name (our own by
        id, a mirror by its owner's key only; `live=False`: those that ended), and our own
        ids' keys; None if none could."""
        own: dict[int, str] = {}
        mirrored: set[str] = set()
        for key in keys:
            owner, _, number = key.rpartition("/")
            if owner != self.unit:
                mirrored.add(key)
            elif (meeting_id := as_id(number)) is not None:
                own[meeting_id] = key
        if not own and not mirrored:
            return None
        status = col(Meeting.status).in_(LIVE) if live else col(Meeting.status).not_in(LIVE)
        return (status
                & or_(col(Meeting.id).in_(own) & col(Meeting.cascade_key).is_(None),
                      col(Meeting.cascade_key).in_(mirrored))), own

    async def _live(self, s: AsyncSession, keys: set[str],
                    inviting: str | None = None, live: bool = True) -> dict[str, Meeting]:
        """The live (scheduled or open) meetings here that `keys` name: our own by id, a
        mirror by its owner's key only; with `inviting`, only those that invite that node
        (in the same read)."""
        named = self._named(keys, live)
        if named is None:
            return {}
        where, own = named
        query = select(Meeting).where(where)
        if inviting is not None:
            query = query.join(MeetingNode, (col(MeetingNode.meeting_id) == col(Meeting.id))
                               & (col(MeetingNode.unit) == inviting))
        rows = await s.exec(query)
        return {m.cascade_key or own[m.id]: m for m in rows.all()}  # type: ignore[index]

    async def router_for(self, key: str) -> str | None:
        async with self.db.session() as s:
            meeting = (await self._live(s, {key})).get(key)
        return None if meeting is None else str(meeting.id)

    async def out_of_scope(self, child: str, keys: set[str]) -> set[str]:
        """What `child` may not act on now: keys that are not a live meeting here, or whose
        meeting does not invite it (rooms/meeting_nodes.py). Read at every event: an
        invitation withdrawn a moment ago counts. One read (the meetings joined with the
        child's invitations), at every event a child sends; two before."""
        async with self.db.session() as s:
            live = await self._live(s, keys, inviting=child)
        return {k for k in keys if k not in live}

    async def ended_inviting(self, child: str, keys: set[str]) -> set[str]:
        """Of `keys`, the meetings here that ended and invite `child` (one read)."""
        async with self.db.session() as s:
            return set(await self._live(s, keys, inviting=child, live=False))

    async def out_of_scope_each(self, asked: dict[str, set[str]]) -> dict[str, set[str]]:
        """`out_of_scope` for every child at once, in one read (the sweep every
        SCOPE_SWEEP_S: one read per linked child before)."""
        named = self._named(set().union(*asked.values()))
        if named is None:
            return {child: set(keys) for child, keys in asked.items()}
        where, own = named
        inside: dict[str, set[str]] = {}
        async with self.db.session() as s:
            rows = await s.exec(select(Meeting.id, Meeting.cascade_key, MeetingNode.unit)
                                .join(MeetingNode, col(MeetingNode.meeting_id) == col(Meeting.id))
                                .where(where, col(MeetingNode.unit).in_(asked)))
            for meeting_id, key, unit in rows.all():
                assert meeting_id is not None
                inside.setdefault(unit, set()).add(key or own[meeting_id])
        return {child: keys - inside.get(child, set()) for child, keys in asked.items()}

    async def offered(self, child: str) -> list[dict[str, Any]]:
        """The live meetings (own or mirrored) that invite `child`, with their invited
        nodes so the child can pass them on. One read (asked by every child every
        PING_INTERVAL_S: the meetings, each with every node it invites and how many times
        its owner reopened it; two reads and two per meeting before)."""
        inviting = aliased(MeetingNode)
        reopened = case(  # an owner counts its chain's reopens, a mirror the count it followed
            (col(Meeting.cascade_key).is_(None), select(func.count()).select_from(AuditEntry)
             .where(col(AuditEntry.meeting_id) == col(Meeting.id),
                    col(AuditEntry.kind) == MeetingAudit.reopened)
             .correlate(Meeting).scalar_subquery()),
            else_=func.coalesce(select(CascadeRef.local_id).where(
                col(CascadeRef.meeting_id) == col(Meeting.id), CascadeRef.ref == REOPENED)
                .correlate(Meeting).scalar_subquery(), 0))
        query = (select(Meeting, MeetingNode.unit, MeetingNode.seats, reopened)
                 .join(inviting, (col(inviting.meeting_id) == col(Meeting.id))
                       & (col(inviting.unit) == child))
                 .join(MeetingNode, col(MeetingNode.meeting_id) == col(Meeting.id))
                 .where(col(Meeting.status).in_(LIVE))
                 .order_by(col(Meeting.starts_at), col(Meeting.id), col(MeetingNode.unit)))
        out: dict[int, dict[str, Any]] = {}
        async with self.db.session() as s:
            for m, unit, seats, count in (await s.exec(query)).all():
                assert m.id is not None
                entry = out.get(m.id)
                if entry is None:
                    if len(out) == MAX_OFFERED:
                        break
                    entry = out[m.id] = {
                        "key": self.key_of(m), "title": m.title, "description": m.description,
                        "starts_at": m.starts_at.isoformat(), "status": m.status.value,
                        "nodes": [], "seats": {}, "reopened": int(count or 0)}
                entry["nodes"].append(unit)  # in order (sorted), as node_seats gives them
                entry["seats"][unit] = seats
        return list(out.values())

    async def mirror(self, offered: list[dict[str, Any]]) -> bool:
        """Mirror what the parent offers; whether anything changed here (a new mirror, an
        invitation or seats passed on: what this node offers its own children)."""
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
            was_open = {m.id for m in mirrors.values() if m.status is not MeetingStatus.closed}
            reopen: list[tuple[int, str, int]] = []
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
                else:  # closed here: open again only if its owner reopened it since
                    assert meeting.id is not None
                    if entry.reopened > (await ref_get(s, meeting.id, REOPENED) or 0):
                        reopen.append((meeting.id, key, entry.reopened))
                    continue
                assert meeting.id is not None
                if entry.reopened > (await ref_get(s, meeting.id, REOPENED) or 0):
                    await ref_put(s, meeting.id, REOPENED, entry.reopened)  # followed
                    changed = True
                try:  # the owner's invitation list and seats, passed on to our children
                    changed |= await meeting_nodes.set_invited_nodes(
                        s, meeting.id, entry.nodes,
                        {u: n for u, n in entry.seats.items() if u in entry.nodes})
                except Invalid as exc:
                    log.warning("cascade: meeting %s: %s", key, exc)
            for key, meeting in mirrors.items():
                if key not in entries and meeting.status is not MeetingStatus.closed:
                    changed |= _update(meeting, meeting.title, meeting.description,
                                       meeting.starts_at, MeetingStatus.closed)
            if changed:
                await s.commit()
            closed = sorted(m.id for m in mirrors.values() if m.id is not None
                            and m.id in was_open and m.status is MeetingStatus.closed)
        if self.on_closed is not None:
            for meeting_id in closed:
                await self.on_closed(meeting_id)
        if self.on_reopened is not None:
            for meeting_id, key, count in reopen:
                await self.on_reopened(meeting_id, key, count)
        return changed or bool(reopen)

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

    async def report(self, child: str, counts: list[HeadcountEntry]) -> None:
        """Replace what `child` reported: its subtree's headcount per meeting, kept in the
        database (RemoteHeadcount) so every process's quorum counts it. All or nothing: a
        count the rule refuses (rooms.attendance.set_remote_headcount: a meeting that does
        not invite the child, more members than its seats) refuses the whole report."""
        changed: list[int] = []
        async with self.db.session() as s:
            live = await self._live(s, {c.key for c in counts})
            wanted: dict[int, attendance.Headcount] = {}
            for entry in counts:
                meeting = live.get(entry.key)
                if meeting is None or meeting.id is None:
                    raise NodeError("not_found", f"meeting {entry.key} is not live here")
                wanted[meeting.id] = attendance.Headcount(child, entry.members, entry.present)
            rows = await s.exec(select(RemoteHeadcount).where(RemoteHeadcount.node == child))
            try:
                for meeting_id in sorted({r.meeting_id for r in rows.all()} | set(wanted)):
                    if await attendance.set_remote_headcount(s, meeting_id, child,
                                                             wanted.get(meeting_id)):
                        changed.append(meeting_id)
            except DomainError as exc:
                raise NodeError(exc.code, exc.message) from None  # rolled back: nothing stored
            if changed:
                await s.commit()
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


async def reopen_mirror(s: AsyncSession, meeting: Meeting, key: str, count: int) -> bool:
    """The owner reopened a meeting this node mirrors, closed here: open it again, audited
    with the owner's key and count (call under the meeting's procedure lock). False if
    already followed (another process, an earlier poll)."""
    assert meeting.id is not None
    if meeting.status is not MeetingStatus.closed or \
            count <= (await ref_get(s, meeting.id, REOPENED) or 0):
        return False
    closed_at = meeting.closed_at
    meeting.status, meeting.closed_at = MeetingStatus.open, None
    s.add(meeting)
    await ref_put(s, meeting.id, REOPENED, count)
    await audit.record(s, meeting.id, None, MeetingAudit.reopened, {
        "closed_at": closed_at.isoformat() if closed_at else None, "from": key,
        "reopened": count})
    log.info("cascade: meeting %s reopened by its owner (%s)", meeting.id, key)
    return True


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
