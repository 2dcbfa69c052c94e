"""Bench-only seeding: a meeting with N delegates, all checked in, ready to vote.

Every delegate shares one password, hashed once, so seeding 500 people takes a second.
Run it against a data directory before the server starts on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from rooms import agenda, meetings, units
from rooms.db import Database
from rooms.models import MeetingRole, MeetingStatus, Role, UnitKind, User, utcnow
from rooms.procedure_models import Attendance, AttendanceStatus
from server.core.migrate import upgrade
from server.core.passwords import password_hasher

PASSWORD = "bench-password-1"


@dataclass(frozen=True)
class BenchMeeting:
    meeting_id: int
    item_id: int
    chair: str
    delegates: list[str]
    password: str = PASSWORD


async def seed_bench_meeting(url: str, delegates: int) -> BenchMeeting:
    db = Database(url)
    try:
        await upgrade(db)
        async with db.session() as s:
            unit = await units.create_unit(s, "Tỉnh Thử nghiệm", UnitKind.province, None)
            assert unit.id is not None
            password_hash = password_hasher(fast=True).hash(PASSWORD)
            chair = User(username="bench-chair", full_name="Chủ trì thử nghiệm",
                         password_hash=password_hash, role=Role.chair, unit_id=unit.id)
            s.add(chair)
            await s.flush()
            meeting = await meetings.create_meeting(s, chair, title="Biểu quyết thử nghiệm",
                                                    unit_id=unit.id,
                                                    starts_at=utcnow() + timedelta(minutes=5))
            await meetings.advance_status(s, meeting, MeetingStatus.open)
            assert meeting.id is not None
            names = [f"bench{n:04d}" for n in range(1, delegates + 1)]
            people = [User(username=name, full_name=f"Đại biểu {name[5:]}",
                           password_hash=password_hash, role=Role.delegate, unit_id=unit.id)
                      for name in names]
            s.add_all(people)
            await s.flush()
            from rooms.models import MeetingMember
            s.add_all([MeetingMember(meeting_id=meeting.id, user_id=p.id,
                                     role=MeetingRole.delegate) for p in people])
            s.add_all([Attendance(meeting_id=meeting.id, user_id=p.id,  # type: ignore[arg-type]
                                  status=AttendanceStatus.online) for p in people])
            item = await agenda.add_item(s, meeting.id, agenda.ItemFields(
                title="Thông qua nghị quyết thử nghiệm"))
            assert item.id is not None
            return BenchMeeting(meeting.id, item.id, "bench-chair", names)
    finally:
        await db.close()
