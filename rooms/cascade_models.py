"""Tables of the meeting state that crosses cascade node links (server/cascade/journal.py,
server/cascade/reports.py): the owner's journal of a meeting, as every node keeps it, the
reports a node still has to deliver towards the owner, and the reports the owner received.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from rooms.models import utcnow

KEY_LENGTH = 84  # "<unit>/<meeting id>", as server/cascade/schemas.py MeetingKey


class CascadeEntry(SQLModel, table=True):
    """One entry of a meeting's journal: written by the owner node (seq 1, 2, ... per
    meeting) and stored, with the same seq, by every node it reached."""

    key: str = Field(primary_key=True, max_length=KEY_LENGTH)
    seq: int = Field(primary_key=True)
    topic: str = Field(max_length=64)
    data: str  # JSON
    applied: bool = False  # at a non-owner node: the topic's applier ran
    at: datetime = Field(default_factory=utcnow)


class CascadeReport(SQLModel, table=True):
    """A report on its way to the meeting's owner, kept until the next node up took it
    (store and forward): `state` pending -> delivered, or refused with the reason."""

    n: int | None = Field(default=None, primary_key=True)  # delivery order
    id: str = Field(unique=True, max_length=32)  # uuid4 hex, made where it was first stored
    key: str = Field(index=True, max_length=KEY_LENGTH)
    origin: str = Field(max_length=64)  # the unit of the node where it happened
    topic: str = Field(max_length=64)
    data: str  # JSON
    state: str = Field(default="pending", max_length=16, index=True)
    reason: str | None = Field(default=None, max_length=300)
    at: datetime = Field(default_factory=utcnow)
    # The child link it came through (None: made here); `origin` may be further down. Each
    # child's share of what this node holds for its parent is counted by it (reports.py).
    via: str | None = Field(default=None, max_length=64)


class CascadeReceived(SQLModel, table=True):
    """At the owner: a report applied (or refused) once; a replay is answered from here."""

    id: str = Field(primary_key=True, max_length=32)
    key: str = Field(max_length=KEY_LENGTH)
    via: str = Field(max_length=64)  # the child unit it came through
    origin: str = Field(max_length=64)
    topic: str = Field(max_length=64)
    state: str = Field(max_length=16)  # applied | refused
    result: str  # JSON: the receiver's result, or {"code", "message"}
    at: datetime = Field(default_factory=utcnow)
