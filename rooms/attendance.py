"""Attendance and roll call (điểm danh), and the quorum computed from them.

Who counts (shared/DOMAIN.md): only the body's voting members, that is the meeting's chair
and delegates, plus the seats a site is given for members without a tablet of their own
(`SiteAttendance.seats`, set by the secretary). The people a site's operator counts at the
roll call (`headcount`) are attendance: they fill the site's seats, at most, and the rest
(guests, staff) are never members, present members or part of a vote's base.

The quorum is a pure function over `Headcount` summaries, one per node: this server gives
one (`local_headcount`), and a cascade can add the summaries its ward/city nodes send up,
so a province meeting counts everyone without seeing each ward's individual records.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlmodel import and_, col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rooms.errors import Conflict, Forbidden, Invalid, NotFound
from rooms.models import MeetingMember, MeetingNode, MeetingRole, Site, User, utcnow
from rooms.procedure_models import (
    Attendance,
    AttendanceStatus,
    ProcedureState,
    QuorumRule,
    RemoteHeadcount,
    SiteAttendance,
)

VOTING_ROLES = frozenset({MeetingRole.chair, MeetingRole.delegate})
PRESENT = frozenset({AttendanceStatus.in_person, AttendanceStatus.online})
MAX_HEADCOUNT = 10_000


@dataclass(frozen=True)
class Headcount:
    """Attendance summarised for one node of a cascade (this server or a remote one)."""

    node: str
    members: int  # people entitled to attend and vote
    present: int

    def __post_init__(self) -> None:
        if not 0 <= self.present <= self.members:
            raise ValueError(f"node {self.node}: present ({self.present}) must be 0 to "
                             f"members ({self.members})")


@dataclass(frozen=True)
class Quorum:
    rule: QuorumRule
    members: int
    present: int
    needed: int
    reached: bool

    def as_dict(self) -> dict[str, Any]:
        return {"rule": self.rule.value, "members": self.members, "present": self.present,
                "needed": self.needed, "reached": self.reached}


def needed_for(rule: QuorumRule, members: int) -> int:
    if rule == QuorumRule.none:
        return 0
    if rule == QuorumRule.two_thirds:
        return max(1, math.ceil(2 * members / 3))
    return members // 2 + 1  # more than half


def quorum(parts: Iterable[Headcount], rule: QuorumRule) -> Quorum:
    members = present = 0
    for part in parts:
        members, present = members + part.members, present + part.present
    needed = needed_for(rule, members)
    reached = rule == QuorumRule.none or (members > 0 and present >= needed)
    return Quorum(rule, members, present, needed, reached)


async def voting_members(session: AsyncSession, meeting_id: int) -> list[tuple[User, MeetingRole]]:
    rows = await session.exec(select(MeetingMember, User)
                              .join(User, col(User.id) == col(MeetingMember.user_id))
                              .where(MeetingMember.meeting_id == meeting_id,
                                     col(MeetingMember.role).in_(list(VOTING_ROLES)))
                              .order_by(col(MeetingMember.id)))
    return [(user, member.role) for member, user in rows.all()]


async def invited_sites(session: AsyncSession, meeting_id: int) -> list[Site]:
    rows = await session.exec(select(Site)
                              .join(MeetingMember, col(MeetingMember.site_id) == col(Site.id))
                              .where(MeetingMember.meeting_id == meeting_id)
                              .order_by(col(MeetingMember.id)))
    return list(rows.all())


async def home_site(session: AsyncSession, meeting_id: int, user: User) -> Site | None:
    """Where a person sits when present in person: their own site, or their unit's."""
    sites = await invited_sites(session, meeting_id)
    for site in sites:
        if site.id == user.site_id:
            return site
    return next((s for s in sites if s.unit_id == user.unit_id), None)


async def status_of(session: AsyncSession, meeting_id: int, user_id: int) -> Attendance | None:
    rows = await session.exec(select(Attendance).where(Attendance.meeting_id == meeting_id,
                                                       Attendance.user_id == user_id))
    return rows.first()


async def is_present(session: AsyncSession, meeting_id: int, user_id: int) -> bool:
    record = await status_of(session, meeting_id, user_id)
    return record is not None and record.status in PRESENT


async def _upsert(session: AsyncSession, meeting_id: int, user_id: int, status: AttendanceStatus,
                  reason: str, site_id: int | None, by: int | None) -> Attendance:
    record = await status_of(session, meeting_id, user_id)
    if record is None:
        record = Attendance(meeting_id=meeting_id, user_id=user_id, status=status)
    record.status, record.reason, record.site_id = status, reason, site_id
    record.recorded_by, record.at = by, utcnow()
    session.add(record)
    await session.flush()
    return record


async def check_in(session: AsyncSession, meeting_id: int, user: User,
                   status: AttendanceStatus) -> Attendance:
    """A person checks in on their own tablet: in person (at their site) or online."""
    if status not in PRESENT:
        raise Invalid("check in as in_person or online; absences are recorded by the secretary")
    site = await home_site(session, meeting_id, user) if status == AttendanceStatus.in_person \
        else None
    return await _upsert(session, meeting_id, user.id, status, "",  # type: ignore[arg-type]
                         site.id if site else None, user.id)


async def record(session: AsyncSession, meeting_id: int, by: User, role: MeetingRole,
                 user_id: int, status: AttendanceStatus, reason: str = "") -> Attendance:
    """The secretary (or chair) records someone's attendance, e.g. absent with a reason."""
    if role not in (MeetingRole.secretary, MeetingRole.chair):
        raise Forbidden("only the secretary or the chair records someone's attendance")
    rows = await session.exec(select(MeetingMember).where(MeetingMember.meeting_id == meeting_id,
                                                          MeetingMember.user_id == user_id))
    if rows.first() is None:
        raise NotFound(f"user {user_id} is not a member of this meeting")
    reason = " ".join(reason.split())
    if len(reason) > 500:
        raise Invalid("reason must be at most 500 characters")
    if status in PRESENT and reason:
        raise Invalid("a reason is only recorded for an absence")
    person = await session.get(User, user_id)
    site = await home_site(session, meeting_id, person) \
        if person is not None and status == AttendanceStatus.in_person else None
    return await _upsert(session, meeting_id, user_id, status, reason,
                         site.id if site else None, by.id)


async def _site_row(session: AsyncSession, meeting_id: int, site_id: int) -> SiteAttendance:
    rows = await session.exec(select(SiteAttendance).where(SiteAttendance.meeting_id == meeting_id,
                                                           SiteAttendance.site_id == site_id))
    return rows.first() or SiteAttendance(meeting_id=meeting_id, site_id=site_id, present=False)


async def require_invited_site(session: AsyncSession, meeting_id: int, site_id: int) -> Site:
    for site in await invited_sites(session, meeting_id):
        if site.id == site_id:
            return site
    raise NotFound(f"site {site_id} is not invited to this meeting")


def may_answer_for(user: User, role: MeetingRole, site_id: int) -> None:
    """Site operators answer for their own site only; chair and secretary for any."""
    if role == MeetingRole.site_operator and user.site_id != site_id:
        raise Forbidden("a site operator answers for their own site only")


async def answer_roll_call(session: AsyncSession, state: ProcedureState, by: User,
                           role: MeetingRole, site_id: int, present: bool,
                           headcount: int) -> SiteAttendance:
    if not state.roll_call_open:
        raise Conflict("the roll call is not open", code="roll_call_closed")
    await require_invited_site(session, state.meeting_id, site_id)
    may_answer_for(by, role, site_id)
    if not 0 <= headcount <= MAX_HEADCOUNT:
        raise Invalid(f"headcount must be 0 to {MAX_HEADCOUNT}")
    row = await _site_row(session, state.meeting_id, site_id)
    row.present, row.headcount = present, headcount if present else 0
    row.answered_by, row.at = by.id, utcnow()
    session.add(row)
    await session.flush()
    return row


async def set_site_seats(session: AsyncSession, meeting_id: int, site_id: int,
                         seats: int) -> SiteAttendance:
    """How many members sit at a site without tablets (the quorum's denominator)."""
    await require_invited_site(session, meeting_id, site_id)
    if not 0 <= seats <= MAX_HEADCOUNT:
        raise Invalid(f"seats must be 0 to {MAX_HEADCOUNT}")
    row = await _site_row(session, meeting_id, site_id)
    row.seats = seats
    session.add(row)
    await session.flush()
    return row


async def site_rows(session: AsyncSession, meeting_id: int) -> dict[int, SiteAttendance]:
    rows = await session.exec(select(SiteAttendance)
                              .where(SiteAttendance.meeting_id == meeting_id))
    return {r.site_id: r for r in rows.all()}


def site_members(row: SiteAttendance) -> int:
    """Members of the body sitting at a site without tablets: its seats, whoever came."""
    return row.seats


def site_present_members(row: SiteAttendance) -> int:
    """Of those, how many are here: the roll call's headcount fills the seats, no more."""
    return min(row.seats, row.headcount) if row.present else 0


def site_guests(row: SiteAttendance) -> int:
    """People counted at a site beyond its members' seats: attendance only."""
    return row.headcount - site_present_members(row) if row.present else 0


def voter_ids(meeting_id: int) -> Any:
    """SELECT of the user ids of the meeting's voting members (a subquery)."""
    return select(MeetingMember.user_id).where(
        MeetingMember.meeting_id == meeting_id, col(MeetingMember.user_id).is_not(None),
        col(MeetingMember.role).in_(list(VOTING_ROLES)))


def present_voter_ids(meeting_id: int) -> Any:
    """SELECT of the user ids of voting members who are checked in (a subquery)."""
    return select(Attendance.user_id).where(
        Attendance.meeting_id == meeting_id, col(Attendance.status).in_(list(PRESENT)),
        col(Attendance.user_id).in_(voter_ids(meeting_id)))


async def count(session: AsyncSession, query: Any) -> int:
    rows = await session.exec(select(func.count()).select_from(query.subquery()))
    return int(rows.one())


async def local_headcount(session: AsyncSession, meeting_id: int) -> Headcount:
    """This server's summary: voting members (plus sites' member seats) and how many of them
    are here; a roll call's headcount counts only within its site's seats."""
    sites = (await site_rows(session, meeting_id)).values()
    members = await count(session, voter_ids(meeting_id)) + sum(site_members(s) for s in sites)
    present = await count(session, present_voter_ids(meeting_id))
    present += sum(site_present_members(s) for s in sites)
    return Headcount("local", members, present)


async def remote_headcounts(session: AsyncSession, meeting_id: int) -> list[Headcount]:
    """What child cascade nodes reported for this meeting, one summary per node: only nodes
    the meeting invites now, each within its seats (lowered or withdrawn since the report,
    the report counts for no more than they allow)."""
    rows = await session.exec(select(RemoteHeadcount, MeetingNode.seats)
                              .join(MeetingNode, and_(
                                  col(MeetingNode.meeting_id) == col(RemoteHeadcount.meeting_id),
                                  col(MeetingNode.unit) == col(RemoteHeadcount.node)))
                              .where(RemoteHeadcount.meeting_id == meeting_id)
                              .order_by(col(RemoteHeadcount.node)))
    out = []
    for r, seats in rows.all():
        members = min(r.members, seats)
        out.append(Headcount(r.node, members, min(r.present, members)))
    return out


async def node_seats(session: AsyncSession, meeting_id: int, node: str) -> int | None:
    """The seats a meeting allots to a child node; None if it does not invite the node."""
    rows = await session.exec(select(MeetingNode.seats).where(MeetingNode.meeting_id == meeting_id,
                                                              MeetingNode.unit == node))
    return rows.first()


async def set_remote_headcount(session: AsyncSession, meeting_id: int, node: str,
                               count: Headcount | None) -> bool:
    """Store a child node's summary (None: forget it); True if anything changed.

    The rule (docs/cascade.md, "Headcounts"): a node speaks for its own subtree only (its
    own row), for a meeting that invites it, and reports at most the seats the meeting
    allots it; anything else is Forbidden and changes nothing."""
    row = await session.get(RemoteHeadcount, (meeting_id, node))
    if count is None:
        if row is not None:
            await session.delete(row)
        return row is not None
    seats = await node_seats(session, meeting_id, node)
    if seats is None:
        raise Forbidden(f"meeting {meeting_id} does not invite node {node}", code="not_invited")
    if count.members > seats:
        raise Forbidden(f"node {node} reports {count.members} members; meeting {meeting_id} "
                        f"allots it {seats} seats", code="over_seats")
    if row is not None and (row.members, row.present) == (count.members, count.present):
        return False
    row = row or RemoteHeadcount(meeting_id=meeting_id, node=node, members=0, present=0)
    row.members, row.present, row.at = count.members, count.present, utcnow()
    session.add(row)
    return True


async def subtree_headcount(session: AsyncSession, meeting_id: int) -> Headcount:
    """This node's summary plus its children's: what it reports to its parent."""
    parts = [await local_headcount(session, meeting_id),
             *await remote_headcounts(session, meeting_id)]
    return Headcount("subtree", sum(p.members for p in parts), sum(p.present for p in parts))


async def attendance_view(session: AsyncSession, state: ProcedureState) -> dict[str, Any]:
    meeting_id = state.meeting_id
    records = await session.exec(select(Attendance).where(Attendance.meeting_id == meeting_id))
    by_user = {r.user_id: r for r in records.all()}
    sites = await invited_sites(session, meeting_id)
    names = {s.id: s.name for s in sites}
    people = []
    for user, role in await voting_members(session, meeting_id):
        r = by_user.get(user.id)  # type: ignore[arg-type]
        people.append({"user_id": user.id, "name": user.full_name, "role": role.value,
                       "status": r.status.value if r else None, "reason": r.reason if r else "",
                       "site_id": r.site_id if r else None,
                       "site": names.get(r.site_id) if r and r.site_id else None})
    answers = await site_rows(session, meeting_id)
    site_list = []
    for site in sites:
        a = answers.get(site.id)  # type: ignore[arg-type]
        site_list.append({"site_id": site.id, "name": site.name,
                          "answered": a is not None and a.answered_by is not None,
                          "present": bool(a and a.present), "headcount": a.headcount if a else 0,
                          "seats": a.seats if a else 0,
                          "members_present": site_present_members(a) if a else 0,
                          "guests": site_guests(a) if a else 0})
    remote = await remote_headcounts(session, meeting_id)
    q = quorum([await local_headcount(session, meeting_id), *remote], state.quorum_rule)
    return {"people": people, "sites": site_list, "roll_call_open": state.roll_call_open,
            "rule_set": state.rule_set.value, "quorum": q.as_dict(),
            # people counted at the sites by roll call: attendance, never a vote's base
            "in_room": sum(a.headcount for a in answers.values() if a.present),
            "nodes": [{"node": h.node, "members": h.members, "present": h.present}
                      for h in remote]}
