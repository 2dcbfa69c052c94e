"""What a meeting's minutes (biên bản) record: the data rooms.minutes gathers from the
database and documents.minutes typesets as PDF. Plain values, no database or PDF imports, so
the domain (rooms) never depends on the typesetter (documents)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from enum import Enum


@dataclass
class Attendee:
    name: str
    position: str = ""  # chức vụ
    present: bool = True
    absence_reason: str = ""
    site: str = ""  # điểm cầu, for multi-site meetings


@dataclass
class Speaker:
    name: str
    seconds: int
    position: str = ""


@dataclass
class AgendaEntry:
    title: str
    presenter: str = ""
    duration_seconds: int | None = None
    speakers: list[Speaker] = field(default_factory=list)
    summary: str = ""


class VoteMethod(str, Enum):
    OPEN = "open"  # biểu quyết công khai
    SECRET = "secret"  # bỏ phiếu kín


@dataclass
class VoteOption:
    label: str  # e.g. "Tán thành", "Không tán thành", "Không biểu quyết"
    count: int


class VoteBaseKind(str, Enum):
    ALL_MEMBERS = "all_members"  # tổng số đại biểu
    PRESENT = "present"  # số đại biểu có mặt


@dataclass
class VoteResult:
    question: str
    method: VoteMethod
    options: list[VoteOption]
    eligible: int  # the percentage base: all voting members, or those present (base_kind)
    adopted: bool
    base_kind: VoteBaseKind = VoteBaseKind.ALL_MEMBERS
    members: int | None = None  # tổng số đại biểu (None: not recorded, = eligible)
    present: int | None = None  # đại biểu có mặt
    cast: int | None = None  # tham gia biểu quyết
    election: bool = False  # the options are candidates
    elected: list[str] = field(default_factory=list)  # an election's elected candidates
    tie_break: bool = False  # a committee's tie, carried by the Chairman's vote
    nodes_note: str = ""  # a cascaded meeting: ballots per node, late ones (never counted)

    def __post_init__(self) -> None:
        if self.eligible <= 0 or any(o.count < 0 for o in self.options):
            raise ValueError("vote counts must be >= 0 and eligible > 0")
        if sum(o.count for o in self.options) > self.eligible:
            raise ValueError(f"more votes than eligible voters in {self.question!r}")


@dataclass
class RecordedSpan:
    """A recording of the meeting (issue 16), local times; `until` None: never stopped
    cleanly (its server died)."""

    since: datetime
    until: datetime | None = None


@dataclass
class MinutesData:
    issuing_body: str  # cơ quan chủ quản, e.g. "UBND THÀNH PHỐ ĐỒNG HỚI"
    unit: str  # cơ quan ban hành, e.g. "VĂN PHÒNG HĐND VÀ UBND"
    number: str  # số, ký hiệu, e.g. "15/BB-VP"
    place_name: str  # địa danh for the date line, e.g. "Đồng Hới"
    issued_on: date
    meeting_title: str
    started_at: datetime
    location: str
    chair: Attendee
    secretary: Attendee
    attendees: list[Attendee] = field(default_factory=list)
    ended_at: datetime | None = None
    sites: list[str] = field(default_factory=list)
    agenda: list[AgendaEntry] = field(default_factory=list)
    votes: list[VoteResult] = field(default_factory=list)
    conclusions: str = ""  # typed by the secretary; one paragraph per line
    recorded: list[RecordedSpan] = field(default_factory=list)  # "được ghi hình từ … đến …"
    closing_note: str = ""
