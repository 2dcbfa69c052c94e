"""Tables of the meeting procedure: agenda, attendance, floor, votes, minutes, audit log.

Secret ballots carry no user id and no timestamp. While their vote is open they are
`SealedBallot` rows (encrypted under a key outside the database, rooms/ballot_seal.py); at
close they become `VoteBallot` rows written in the order of their receipt hashes. Who took
part is in `VoteParticipation`, which holds no option for a secret vote. See
docs/security.md, "Secret ballots".
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Column, LargeBinary, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from rooms.models import enum_column, utcnow


class AttendanceStatus(str, enum.Enum):
    in_person = "in_person"  # có mặt tại điểm cầu
    online = "online"  # tham dự trực tuyến
    absent = "absent"  # vắng mặt


class QuorumRule(str, enum.Enum):
    majority = "majority"  # more than half of the members
    two_thirds = "two_thirds"  # at least two thirds of the members
    none = "none"  # other meetings (briefings, consultations): no quorum


class RuleSet(str, enum.Enum):
    """The body whose working rules the meeting follows (shared/DOMAIN.md, "Rules a vote
    and a quorum follow"): it gives the quorum and each vote's default base and threshold."""

    council = "council"  # HĐND session: passes with more than half of ALL delegates
    committee = "committee"  # UBND meeting: more than half of all members; a tie goes the
    # Chairman's way
    other = "other"  # briefings, consultations: opinions, counted among those present


class VoteKind(str, enum.Enum):
    motion = "motion"  # adopted or not ("Thông qua" / "Không thông qua")
    election = "election"  # the options are candidates; who is elected


class VoteBase(str, enum.Enum):
    all_members = "all_members"  # "tổng số đại biểu": every voting member of the body
    present = "present"  # the voting members present when the vote closes


class Threshold(str, enum.Enum):
    majority = "majority"  # more than half of the base ("quá nửa")
    two_thirds = "two_thirds"  # at least two thirds of the base


class FloorStatus(str, enum.Enum):
    queued = "queued"
    speaking = "speaking"
    done = "done"
    skipped = "skipped"
    withdrawn = "withdrawn"


class VoteStatus(str, enum.Enum):
    open = "open"
    closed = "closed"


class ProcedureState(SQLModel, table=True):
    """One row per meeting: the live pointers, the rule, and the lock every change takes.

    `seq` grows by one with every procedural change; events carry it so clients can drop
    stale ones (socket.io runs handlers concurrently)."""

    meeting_id: int = Field(primary_key=True, foreign_key="meeting.id")
    seq: int = 0
    current_item_id: int | None = Field(default=None, foreign_key="agendaitem.id")
    current_since: datetime | None = None
    floor_request_id: int | None = Field(default=None, foreign_key="floorrequest.id")
    roll_call_open: bool = False
    quorum_rule: QuorumRule = Field(default=QuorumRule.majority, sa_column=enum_column(QuorumRule))
    rule_set: RuleSet = Field(default=RuleSet.other, sa_column=enum_column(RuleSet))
    paused_at: datetime | None = None  # the chair paused the open meeting (a recess)
    conclusions: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))


class AgendaItem(SQLModel, table=True):
    """An item of the agenda (chương trình nghị sự); documents attach via AgendaDocument."""

    id: int | None = Field(default=None, primary_key=True)
    meeting_id: int = Field(foreign_key="meeting.id", index=True)
    position: int
    title: str = Field(max_length=300)
    planned_minutes: int = 0
    presenter_user_id: int | None = Field(default=None, foreign_key="user.id")
    presenter_name: str = Field(default="", max_length=200)
    spent_seconds: int = 0  # time it was current, excluding the running stretch
    started_at: datetime | None = None  # first time it became current
    removed: bool = False  # items that were discussed are hidden, not deleted


class AgendaDocument(SQLModel, table=True):
    """Which documents belong to an agenda item; filled by the documents service."""

    __table_args__ = (UniqueConstraint("agenda_item_id", "document_id", name="uq_agenda_doc"),)

    id: int | None = Field(default=None, primary_key=True)
    agenda_item_id: int = Field(foreign_key="agendaitem.id", index=True)
    document_id: int = Field(index=True)  # documents.db_models.Document.id (no FK: decoupled)
    position: int = 0


class Attendance(SQLModel, table=True):
    """A person's attendance, as checked in by them or recorded by the secretary."""

    __table_args__ = (UniqueConstraint("meeting_id", "user_id", name="uq_attendance_user"),)

    id: int | None = Field(default=None, primary_key=True)
    meeting_id: int = Field(foreign_key="meeting.id", index=True)
    user_id: int = Field(foreign_key="user.id")
    status: AttendanceStatus = Field(sa_column=enum_column(AttendanceStatus))
    reason: str = Field(default="", max_length=500)
    site_id: int | None = Field(default=None, foreign_key="site.id")
    recorded_by: int | None = Field(default=None, foreign_key="user.id")
    at: datetime = Field(default_factory=utcnow)


class SiteAttendance(SQLModel, table=True):
    """A site's answer to the roll call: present, with how many people are in the room."""

    __table_args__ = (UniqueConstraint("meeting_id", "site_id", name="uq_attendance_site"),)

    id: int | None = Field(default=None, primary_key=True)
    meeting_id: int = Field(foreign_key="meeting.id", index=True)
    site_id: int = Field(foreign_key="site.id")
    present: bool = True
    headcount: int = 0
    seats: int = 0  # expected members at the site (0: unknown, the headcount counts)
    answered_by: int | None = Field(default=None, foreign_key="user.id")
    at: datetime = Field(default_factory=utcnow)


class FloorRequest(SQLModel, table=True):
    """A request to speak (đăng ký phát biểu) by a person or on behalf of a site."""

    id: int | None = Field(default=None, primary_key=True)
    meeting_id: int = Field(foreign_key="meeting.id", index=True)
    agenda_item_id: int | None = Field(default=None, foreign_key="agendaitem.id")
    user_id: int = Field(foreign_key="user.id")
    site_id: int | None = Field(default=None, foreign_key="site.id")
    for_site: bool = False  # the site speaks (its operator asked), not the person
    status: FloorStatus = Field(sa_column=enum_column(FloorStatus))
    requested_at: datetime = Field(default_factory=utcnow)
    granted_at: datetime | None = None
    ended_at: datetime | None = None
    limit_seconds: int | None = None
    spoken_seconds: int = 0


class Vote(SQLModel, table=True):
    """A vote (biểu quyết) on an agenda item; options are stored as a JSON list."""

    id: int | None = Field(default=None, primary_key=True)
    meeting_id: int = Field(foreign_key="meeting.id", index=True)
    agenda_item_id: int = Field(foreign_key="agendaitem.id")
    question: str = Field(max_length=500)
    options_json: str = Field(sa_column=Column(Text, nullable=False))
    custom_options: bool = False  # False: the standard agree / disagree / abstain
    secret: bool = False
    allow_change: bool = False
    status: VoteStatus = Field(sa_column=enum_column(VoteStatus))
    opened_at: datetime = Field(default_factory=utcnow)
    closed_at: datetime | None = None
    opened_by: int | None = Field(default=None, foreign_key="user.id")
    result_json: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    seal_key_id: str | None = Field(default=None, max_length=16)  # secret votes: whose key seals
    kind: VoteKind = Field(default=VoteKind.motion, sa_column=enum_column(VoteKind))
    base: VoteBase = Field(default=VoteBase.all_members, sa_column=enum_column(VoteBase))
    threshold: Threshold = Field(default=Threshold.majority, sa_column=enum_column(Threshold))
    closes_at: datetime | None = None  # a time limit: the server closes the vote then


class VoteParticipation(SQLModel, table=True):
    """That a person voted (once per vote, by a unique constraint). For an open vote it also
    holds their option; for a secret vote `option` is always NULL."""

    __table_args__ = (UniqueConstraint("vote_id", "user_id", name="uq_participation"),)

    id: int | None = Field(default=None, primary_key=True)
    vote_id: int = Field(foreign_key="vote.id", index=True)
    user_id: int = Field(foreign_key="user.id")
    option: int | None = None
    client_seq: int = 0  # the voter's own counter, so a late duplicate cannot undo a change


class SealedBallot(SQLModel, table=True):
    """A secret ballot while its vote is open: `sealed` is AES-GCM over (option, receipt
    hash); `lookup` is an HMAC of the receipt. Both keyed outside the database, so a copy of
    the file says nothing of the option. Erased when the vote closes."""

    __table_args__ = ({"sqlite_with_rowid": False},)

    vote_id: int = Field(foreign_key="vote.id", primary_key=True)
    lookup: str = Field(primary_key=True, max_length=64)
    sealed: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class VoteBallot(SQLModel, table=True):
    """A counted ballot of a closed secret vote: no user id, no time; the key is the receipt
    hash, and the rows are written at close in that (random) order, in one transaction."""

    __table_args__ = (UniqueConstraint("receipt_hash", name="uq_ballot_receipt"),
                      {"sqlite_with_rowid": False})

    vote_id: int = Field(foreign_key="vote.id", primary_key=True)
    receipt_hash: str = Field(primary_key=True, max_length=64)
    option: int


class SiteVoteCount(SQLModel, table=True):
    """Counts entered for a site without tablets, by its operator or the secretary."""

    __table_args__ = (UniqueConstraint("vote_id", "site_id", name="uq_site_count"),)

    id: int | None = Field(default=None, primary_key=True)
    vote_id: int = Field(foreign_key="vote.id", index=True)
    site_id: int = Field(foreign_key="site.id")
    counts_json: str = Field(sa_column=Column(Text, nullable=False))
    entered_by: int = Field(foreign_key="user.id")


class MinutesVersion(SQLModel, table=True):
    """An archived minutes PDF; regenerating adds a version, never overwrites one."""

    __table_args__ = (UniqueConstraint("meeting_id", "version", name="uq_minutes_version"),)

    id: int | None = Field(default=None, primary_key=True)
    meeting_id: int = Field(foreign_key="meeting.id", index=True)
    version: int
    sha256: str = Field(max_length=64)
    size: int
    pdf: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    audit_hash: str = Field(max_length=64)  # the audit chain head when it was generated
    created_by: int = Field(foreign_key="user.id")
    created_at: datetime = Field(default_factory=utcnow)


class AuditHead(SQLModel, table=True):
    """The end of a meeting's audit chain; appends lock this row, so the chain never forks."""

    meeting_id: int = Field(primary_key=True, foreign_key="meeting.id")
    seq: int = 0
    hash: str = Field(default="", max_length=64)


class AuditEntry(SQLModel, table=True):
    """Append-only: hash = sha256(prev_hash + canonical JSON of the row's content)."""

    __table_args__ = (UniqueConstraint("meeting_id", "seq", name="uq_audit_seq"),)

    id: int | None = Field(default=None, primary_key=True)
    meeting_id: int = Field(foreign_key="meeting.id", index=True)
    seq: int
    at: datetime = Field(default_factory=utcnow)
    actor_id: int | None = Field(default=None, foreign_key="user.id")
    kind: str = Field(max_length=64)
    data_json: str = Field(sa_column=Column(Text, nullable=False))
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)


class RemoteHeadcount(SQLModel, table=True):
    """A child cascade node's attendance summary for one meeting (its subtree's), as last
    reported over the node link; counted in this meeting's quorum (rooms/attendance.py)."""

    meeting_id: int = Field(foreign_key="meeting.id", primary_key=True)
    node: str = Field(primary_key=True, max_length=64)
    members: int
    present: int
    at: datetime = Field(default_factory=utcnow)
