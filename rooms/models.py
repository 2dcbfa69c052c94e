"""The persistent domain: units, sites, users, meetings and who belongs to them.

Tables are SQLModel classes; schema changes go through Alembic (server/migrations).
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime

from sqlalchemy import Column, UniqueConstraint
from sqlalchemy import Enum as SAEnum
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class UnitKind(str, enum.Enum):
    province = "province"
    city = "city"
    ward = "ward"
    other = "other"


class Role(str, enum.Enum):
    """A user's global role: what they may do outside any one meeting."""

    admin = "admin"
    chair = "chair"
    secretary = "secretary"
    delegate = "delegate"
    site_operator = "site_operator"


class MeetingRole(str, enum.Enum):
    """What a person is in one meeting; permissions are checked against this."""

    chair = "chair"
    secretary = "secretary"
    delegate = "delegate"
    site_operator = "site_operator"
    observer = "observer"


class MeetingStatus(str, enum.Enum):
    scheduled = "scheduled"
    open = "open"
    closed = "closed"


class UnitChange(str, enum.Enum):
    created = "created"
    renamed = "renamed"
    reparented = "reparented"
    merged = "merged"


def enum_column(e: type[enum.Enum]) -> Column:  # type: ignore[type-arg]
    # Stored as plain strings (no native enum types) so migrations stay portable.
    return Column(SAEnum(e, native_enum=False, length=32), nullable=False)


class Unit(SQLModel, table=True):
    """An organisational unit (tỉnh → thành phố/huyện → phường/xã), a tree of any depth."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    kind: UnitKind = Field(sa_column=enum_column(UnitKind))
    parent_id: int | None = Field(default=None, foreign_key="unit.id", index=True)
    merged_into_id: int | None = Field(default=None, foreign_key="unit.id")
    active: bool = True
    created_at: datetime = Field(default_factory=utcnow)


class UnitEvent(SQLModel, table=True):
    """Append-only history of renames, re-parents and merges."""

    id: int | None = Field(default=None, primary_key=True)
    unit_id: int = Field(foreign_key="unit.id", index=True)
    change: UnitChange = Field(sa_column=enum_column(UnitChange))
    old_value: str | None = Field(default=None, max_length=200)
    new_value: str | None = Field(default=None, max_length=200)
    by_user_id: int | None = Field(default=None, foreign_key="user.id")
    at: datetime = Field(default_factory=utcnow)


class Site(SQLModel, table=True):
    """A meeting room (điểm cầu) of a unit."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    unit_id: int = Field(foreign_key="unit.id", index=True)
    active: bool = True


class User(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=64, unique=True, index=True)
    full_name: str = Field(max_length=200)
    password_hash: str = Field(max_length=256)
    role: Role = Field(sa_column=enum_column(Role))
    unit_id: int | None = Field(default=None, foreign_key="unit.id")
    site_id: int | None = Field(default=None, foreign_key="site.id")
    disabled: bool = False
    created_at: datetime = Field(default_factory=utcnow)


class AuthSession(SQLModel, table=True):
    """A server-side login session. Only a hash of the cookie token is stored."""

    token_hash: str = Field(primary_key=True, max_length=64)
    user_id: int = Field(foreign_key="user.id", index=True)
    csrf_token: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime


class Meeting(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    title: str = Field(max_length=300)
    description: str = Field(default="", max_length=4000)
    unit_id: int = Field(foreign_key="unit.id")  # the host unit (điểm cầu chính)
    status: MeetingStatus = Field(sa_column=enum_column(MeetingStatus))
    starts_at: datetime
    opened_at: datetime | None = None
    closed_at: datetime | None = None
    created_by: int | None = Field(default=None, foreign_key="user.id")
    created_at: datetime = Field(default_factory=utcnow)
    # Set on a meeting mirrored from a parent node: "<owner node unit>/<owner's meeting id>".
    cascade_key: str | None = Field(default=None, max_length=160, unique=True, index=True)


class MeetingMember(SQLModel, table=True):
    """One person in a meeting with their role there; invited sites are rows with site_id."""

    __table_args__ = (UniqueConstraint("meeting_id", "user_id", name="uq_member_user"),
                      UniqueConstraint("meeting_id", "site_id", name="uq_member_site"))

    id: int | None = Field(default=None, primary_key=True)
    meeting_id: int = Field(foreign_key="meeting.id", index=True)
    user_id: int | None = Field(default=None, foreign_key="user.id", index=True)
    site_id: int | None = Field(default=None, foreign_key="site.id")
    role: MeetingRole = Field(sa_column=enum_column(MeetingRole))


class NodeCredential(SQLModel, table=True):
    """A child node's credential as the administrator last set it (server/cascade/credentials.py).

    Overlays HOPSO_NODE_CHILDREN at start-up: a stored secret replaces the configured one,
    a revoked row removes it. The secret is kept as is: the node link's HMAC needs it."""

    unit: str = Field(primary_key=True, max_length=64)
    secret: str | None = Field(default=None, max_length=256)  # None once revoked
    revoked: bool = False
    updated_at: datetime = Field(default_factory=utcnow)


class MeetingNode(SQLModel, table=True):
    """A child cascade node invited to a meeting: it is offered the meeting and mirrors it
    (rooms/meeting_nodes.py, server/cascade/meetings.py). `unit` is the node's HOPSO_NODE_UNIT.
    Only while this row exists may the node act on the meeting (docs/cascade.md)."""

    meeting_id: int = Field(foreign_key="meeting.id", primary_key=True)
    unit: str = Field(primary_key=True, max_length=64)
    # Voting members the node's subtree may report for this meeting (rooms/attendance.py:
    # a child's headcount counts in the quorum up to this, never more).
    seats: int = 0
