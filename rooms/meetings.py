"""Meetings, their life cycle (scheduled → open → closed) and their members."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, bindparam
from sqlalchemy.orm import aliased
from sqlmodel import col, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rooms.errors import Conflict, DomainError, Forbidden, Invalid, NotFound
from rooms.models import (
    AuthSession,
    Meeting,
    MeetingMember,
    MeetingRole,
    MeetingStatus,
    Role,
    Site,
    User,
    utcnow,
)
from rooms.permissions import CAN_CREATE_MEETINGS, Action, allows
from rooms.units import UnitNode, get_site, get_unit, unit_tree
from rooms.users import get_user

_NEXT_STATUS = {MeetingStatus.scheduled: MeetingStatus.open,
                MeetingStatus.open: MeetingStatus.closed}


@dataclass(frozen=True)
class MeetingAccess:
    """The result of an access check: the meeting and the caller's role in it."""

    meeting: Meeting
    role: MeetingRole
    user: User


def meeting_dict(meeting: Meeting, role: MeetingRole | None = None) -> dict[str, object]:
    data: dict[str, object] = {
        "id": meeting.id, "title": meeting.title, "description": meeting.description,
        "unit_id": meeting.unit_id, "status": meeting.status.value,
        "starts_at": meeting.starts_at.isoformat(),
        "opened_at": meeting.opened_at.isoformat() if meeting.opened_at else None,
        "closed_at": meeting.closed_at.isoformat() if meeting.closed_at else None,
        "cascade_key": meeting.cascade_key,  # set on a meeting mirrored from a parent node
    }
    if role is not None:
        data["my_role"] = role.value
    return data


async def role_in_meeting(session: AsyncSession, user: User, meeting_id: int) -> MeetingRole | None:
    """A person's own membership wins; otherwise an operator of an invited site is its operator."""
    return (await roles_in_meeting(session, [user], meeting_id)).get(user.id)  # type: ignore[arg-type]


async def roles_in_meeting(session: AsyncSession, users: Sequence[User], meeting_id: int
                           ) -> dict[int, MeetingRole]:
    """`role_in_meeting` for many people at once: two queries at most, whatever their number."""
    rows = await session.exec(select(MeetingMember.user_id, MeetingMember.role).where(
        MeetingMember.meeting_id == meeting_id,
        col(MeetingMember.user_id).in_({u.id for u in users})))
    roles = {uid: MeetingRole(role) for uid, role in rows.all() if uid is not None}
    operators = [u for u in users if u.id not in roles and u.site_id is not None
                 and u.role == Role.site_operator]
    if operators:
        sites = await session.exec(select(MeetingMember.site_id).where(
            MeetingMember.meeting_id == meeting_id,
            col(MeetingMember.site_id).in_({u.site_id for u in operators})))
        invited = set(sites.all())
        roles.update({u.id: MeetingRole.site_operator  # type: ignore[misc]
                      for u in operators if u.site_id in invited})
    return roles


async def require(session: AsyncSession, user: User, meeting_id: int,
                  action: Action = Action.view) -> MeetingAccess:
    """Non-members get 404 (the meeting's existence is not revealed); members lacking the
    action get 403."""
    (access,) = await require_many(session, [user], meeting_id, action)
    if isinstance(access, DomainError):
        raise access
    return access


async def require_many(session: AsyncSession, users: Sequence[User], meeting_id: int,
                       action: Action = Action.view) -> list[MeetingAccess | DomainError]:
    """`require` for many people at once (a batch of ballots): each one's access or refusal,
    in order, for three queries at most."""
    meeting = await session.get(Meeting, meeting_id)
    roles = await roles_in_meeting(session, users, meeting_id) if meeting else {}
    return [judge(meeting, meeting_id, user, roles.get(user.id), action)  # type: ignore[arg-type]
            for user in users]


def judge(meeting: Meeting | None, meeting_id: int, user: User, role: MeetingRole | None,
          action: Action) -> MeetingAccess | DomainError:
    """The access check's verdict once the meeting and the person's role in it are read."""
    if meeting is None or role is None:
        return NotFound(f"meeting {meeting_id} not found")
    if not allows(role, action):
        return Forbidden(f"your role ({role.value}) may not {action.value} in this meeting")
    return MeetingAccess(meeting, role, user)


# --- the caller's session and access in one read ------------------------------------------
# A tablet polling a meeting's documents asks several times a second; its session, its
# person and its access to the meeting are read by one statement (not one for the session,
# then the meeting, then the role), and still at every request: nothing is kept between two.

_PERSON = aliased(MeetingMember, name="person_member")
_SITE = aliased(MeetingMember, name="site_member")


def session_select(*entities: Any) -> Select[Any]:
    """SELECT the session whose token hash is bound as `token_hash`, its user and
    `entities`: no row when there is no such session."""
    return (select(AuthSession, User, *entities)  # type: ignore[call-overload]
            .join(User, col(User.id) == col(AuthSession.user_id))
            .where(col(AuthSession.token_hash) == bindparam("token_hash")))


def with_membership(query: Select[Any], meeting_id: ColumnElement[int] | Any) -> Select[Any]:
    """`query` (a `session_select`) with the meeting `meeting_id` names and the user's two
    ways into it added as its last three columns: the Meeting (None if there is none), the
    role of their own membership, and the invited membership of their site (the unique
    constraints on (meeting, user) and (meeting, site) keep it one row). `access_of` reads
    them."""
    return (query.add_columns(Meeting, col(_PERSON.role), col(_SITE.id))
            .outerjoin(Meeting, col(Meeting.id) == meeting_id)
            .outerjoin(_PERSON, and_(col(_PERSON.meeting_id) == col(Meeting.id),
                                     col(_PERSON.user_id) == col(User.id)))
            .outerjoin(_SITE, and_(col(_SITE.meeting_id) == col(Meeting.id),
                                   col(_SITE.site_id) == col(User.site_id))))


def role_of(user: User, person_role: MeetingRole | str | None, site_member_id: int | None
            ) -> MeetingRole | None:
    """`role_in_meeting` from `with_membership`'s columns: a person's own membership wins;
    otherwise an operator of an invited site is its operator."""
    if person_role is not None:
        return MeetingRole(person_role)
    if site_member_id is not None and user.site_id is not None \
            and user.role == Role.site_operator:
        return MeetingRole.site_operator
    return None


def access_of(row: Sequence[Any], meeting_id: int, action: Action = Action.view
              ) -> MeetingAccess | DomainError:
    """`require`'s verdict from a row of `with_membership(session_select(...))`."""
    user, (meeting, person_role, site_member_id) = row[1], row[-3:]
    return judge(meeting, meeting_id, user, role_of(user, person_role, site_member_id), action)


async def create_meeting(session: AsyncSession, creator: User, *, title: str, unit_id: int,
                         starts_at: datetime, description: str = "") -> Meeting:
    if creator.role not in CAN_CREATE_MEETINGS:
        raise Forbidden("only admins, chairs and secretaries schedule meetings")
    title = " ".join(title.split())
    if not 1 <= len(title) <= 300:
        raise Invalid("title must be 1 to 300 characters")
    await get_unit(session, unit_id)
    meeting = Meeting(title=title, description=description[:4000], unit_id=unit_id,
                      status=MeetingStatus.scheduled, starts_at=starts_at.astimezone(UTC),
                      created_by=creator.id)
    session.add(meeting)
    await session.flush()
    assert meeting.id is not None
    session.add(MeetingMember(meeting_id=meeting.id, user_id=creator.id,
                              role=MeetingRole.secretary if creator.role != Role.chair
                              else MeetingRole.chair))
    return meeting


async def advance_status(session: AsyncSession, meeting: Meeting,
                         to: MeetingStatus) -> Meeting:
    if _NEXT_STATUS.get(meeting.status) != to:
        raise Conflict(f"a meeting cannot go from {meeting.status.value} to {to.value}")
    meeting.status = to
    if to == MeetingStatus.open:
        meeting.opened_at = utcnow()
    else:
        meeting.closed_at = utcnow()
    session.add(meeting)
    return meeting


async def meetings_for(session: AsyncSession, user: User) -> list[tuple[Meeting, MeetingRole]]:
    conditions = [MeetingMember.user_id == user.id]
    if user.site_id is not None and user.role == Role.site_operator:
        conditions.append(MeetingMember.site_id == user.site_id)
    rows = await session.exec(select(MeetingMember).where(or_(*conditions)))
    roles: dict[int, MeetingRole] = {}
    for m in rows.all():
        if m.user_id == user.id or m.meeting_id not in roles:
            roles[m.meeting_id] = m.role if m.user_id == user.id else MeetingRole.site_operator
    if not roles:
        return []
    meetings = await session.exec(select(Meeting).where(Meeting.id.in_(roles))  # type: ignore[union-attr]
                                  .order_by(Meeting.starts_at))  # type: ignore[arg-type]
    return [(m, roles[m.id]) for m in meetings.all() if m.id is not None]


# Roles that run the meeting: given and taken only by its chair or by whoever scheduled it.
APPOINTED_ROLES = frozenset({MeetingRole.chair, MeetingRole.secretary})


def may_appoint(access: MeetingAccess) -> bool:
    """The meeting's chair, or the person who scheduled it (a secretary, an administrator),
    appoints its chair and secretaries."""
    return access.role == MeetingRole.chair or (
        access.meeting.created_by is not None and access.meeting.created_by == access.user.id)


def check_member_change(access: MeetingAccess, user_id: int | None,
                        current: MeetingRole | None, new: MeetingRole | None) -> None:
    """The rule for every change of a membership (add, role change, removal; docs/protocol.md,
    "Who may change a role"): only a member who manages the meeting changes members; nobody
    changes or removes their own membership; giving or taking the chair or secretary role
    needs `may_appoint`. Forbidden otherwise, before anything is written."""
    if not allows(access.role, Action.manage):
        raise Forbidden(f"your role ({access.role.value}) may not change members")
    if user_id is not None and user_id == access.user.id:
        raise Forbidden("nobody changes their own role or membership; another chair or "
                        "secretary of the meeting does", code="own_membership")
    for role in (current, new):
        if role in APPOINTED_ROLES and not may_appoint(access):
            raise Forbidden(f"only the meeting's chair or the person who scheduled it gives or "
                            f"takes the {role.value} role", code="role_not_grantable")


async def add_member(session: AsyncSession, access: MeetingAccess, role: MeetingRole, *,
                     user_id: int | None = None, site_id: int | None = None) -> MeetingMember:
    """Invite a person or a site, or change an invited person's role, as `access.user`."""
    meeting_id = access.meeting.id
    assert meeting_id is not None
    if (user_id is None) == (site_id is None):
        raise Invalid("give exactly one of user_id or site_id")
    existing = await _membership(session, meeting_id, user_id, site_id)
    if site_id is not None:
        role = MeetingRole.site_operator  # an invited site takes part through its operators
    check_member_change(access, user_id, existing.role if existing else None, role)
    return await store_member(session, meeting_id, role, user_id=user_id, site_id=site_id)


async def _membership(session: AsyncSession, meeting_id: int, user_id: int | None,
                      site_id: int | None) -> MeetingMember | None:
    rows = await session.exec(select(MeetingMember).where(
        MeetingMember.meeting_id == meeting_id,
        MeetingMember.user_id == user_id if user_id is not None
        else MeetingMember.site_id == site_id))
    return rows.first()


async def store_member(session: AsyncSession, meeting_id: int, role: MeetingRole, *,
                       user_id: int | None = None, site_id: int | None = None) -> MeetingMember:
    """Write a membership without any permission check: seeding and the system only (a
    person's request goes through `add_member`)."""
    if (user_id is None) == (site_id is None):
        raise Invalid("give exactly one of user_id or site_id")
    if user_id is not None:
        await get_user(session, user_id)
    else:
        assert site_id is not None
        await get_site(session, site_id)
        role = MeetingRole.site_operator
    member = await _membership(session, meeting_id, user_id, site_id)
    if member:
        member.role = role
    else:
        member = MeetingMember(meeting_id=meeting_id, user_id=user_id, site_id=site_id, role=role)
    session.add(member)
    await session.flush()
    return member


async def remove_member(session: AsyncSession, access: MeetingAccess, member_id: int) -> None:
    member = await session.get(MeetingMember, member_id)
    if member is None or member.meeting_id != access.meeting.id:
        raise NotFound(f"member {member_id} not found in this meeting")
    check_member_change(access, member.user_id, member.role, None)
    await session.delete(member)


async def members(session: AsyncSession, meeting_id: int) -> list[dict[str, object]]:
    rows = await session.exec(select(MeetingMember).where(MeetingMember.meeting_id == meeting_id)
                              .order_by(MeetingMember.id))  # type: ignore[arg-type]
    out: list[dict[str, object]] = []
    for m in rows.all():
        entry: dict[str, object] = {"id": m.id, "role": m.role.value, "user_id": m.user_id,
                                    "site_id": m.site_id}
        if m.user_id is not None:
            user = await session.get(User, m.user_id)
            entry["name"] = user.full_name if user else "?"
            entry["unit_id"] = user.unit_id if user else None
        else:
            site = await session.get(Site, m.site_id)
            entry["name"] = site.name if site else "?"
            entry["unit_id"] = site.unit_id if site else None
        out.append(entry)
    return out


async def directory(session: AsyncSession, user: User) -> dict[str, list[dict[str, object]]]:
    """Who and what a scheduler may invite: active units (tree order, parents first), their
    active sites, and enabled people — names and places only, never usernames or hashes."""
    if user.role not in CAN_CREATE_MEETINGS:
        raise Forbidden("only admins, chairs and secretaries see the directory")
    tree = await unit_tree(session)
    unit_rows: list[dict[str, object]] = []
    site_rows: list[dict[str, object]] = []

    def walk(nodes: list[UnitNode]) -> None:
        for node in nodes:
            unit = node.unit
            unit_rows.append({"id": unit.id, "name": unit.name, "kind": unit.kind.value,
                              "parent_id": unit.parent_id})
            site_rows.extend({"id": site.id, "name": site.name, "unit_id": site.unit_id}
                             for site in sorted(node.sites, key=lambda s: (s.name, s.id or 0)))
            walk(node.children)
    walk(tree)
    rows = await session.exec(select(User).where(User.disabled == False)  # noqa: E712 - SQL
                              .order_by(User.full_name, User.id))  # type: ignore[arg-type]
    people: list[dict[str, object]] = [
        {"id": p.id, "full_name": p.full_name, "role": p.role.value, "unit_id": p.unit_id,
         "site_id": p.site_id} for p in rows.all()]
    return {"units": unit_rows, "sites": site_rows, "people": people}
