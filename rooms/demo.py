"""Demo data: Tỉnh Quảng Bình → Thành phố Đồng Hới → its 15 wards and communes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from rooms import meetings, units, users
from rooms.models import MeetingRole, Role, Unit, UnitKind, User, utcnow

WARDS = [
    "Phường Đồng Phú", "Phường Hải Thành", "Phường Bắc Lý", "Phường Nam Lý", "Phường Đồng Sơn",
    "Phường Bắc Nghĩa", "Phường Đức Ninh Đông", "Phường Phú Hải", "Phường Đồng Hải",
    "Xã Bảo Ninh", "Xã Lộc Ninh", "Xã Quang Phú", "Xã Nghĩa Ninh", "Xã Thuận Đức", "Xã Đức Ninh",
]
PROVINCE, CITY = "Tỉnh Quảng Bình", "Thành phố Đồng Hới"
DEMO_MEETING = "Hội nghị trực tuyến triển khai chuyển đổi số năm 2026"

# username, full name, global role, meeting role, unit ("province" | "city" | ward index)
DEMO_PEOPLE: list[tuple[str, str, Role, MeetingRole | None, str | int]] = [
    ("quantri", "Quản trị hệ thống", Role.admin, None, "province"),
    ("chutri", "Nguyễn Văn Hùng", Role.chair, MeetingRole.chair, "province"),
    ("thuky", "Trần Thị Lan", Role.secretary, MeetingRole.secretary, "city"),
    ("daibieu", "Lê Minh Tuấn", Role.delegate, MeetingRole.delegate, "city"),
    ("daibieu2", "Phạm Thị Hoa", Role.delegate, MeetingRole.delegate, 0),
    ("daibieu3", "Hoàng Văn Nam", Role.delegate, MeetingRole.delegate, 9),
    ("kythuat", "Võ Đức Anh", Role.site_operator, None, 0),
]


@dataclass(frozen=True)
class DemoLogin:
    username: str
    password: str
    full_name: str
    role: str


async def seed_demo(session: AsyncSession, hash_password: Callable[[str], str],
                    new_password: Callable[[], str]) -> list[DemoLogin]:
    """Creates the demo data once; on every call, gives each demo user a fresh password
    (returned, so they can be printed) — nobody ever logs in with a known default."""
    rows = await session.exec(select(Unit).where(Unit.name == PROVINCE, Unit.active == True))  # noqa: E712
    if rows.first() is None:
        await _create(session, hash_password)
    logins: list[DemoLogin] = []
    for username, full_name, role, _, _ in DEMO_PEOPLE:
        user = await users.find_user(session, username)
        assert user is not None
        password = new_password()
        user.password_hash = hash_password(password)
        session.add(user)
        logins.append(DemoLogin(username, password, full_name, role.value))
    return logins


async def _create(session: AsyncSession, hash_password: Callable[[str], str]) -> None:
    province = await units.create_unit(session, PROVINCE, UnitKind.province, None)
    city = await units.create_unit(session, CITY, UnitKind.city, province.id)
    wards = [await units.create_unit(session, name, UnitKind.ward, city.id) for name in WARDS]
    site_of: dict[int | None, int | None] = {}
    for unit, label in [(province, "Điểm cầu chính UBND tỉnh"), (city, "Phòng họp UBND thành phố")] \
            + [(w, f"Điểm cầu {w.name}") for w in wards]:
        site = await units.create_site(session, label, unit.id)  # type: ignore[arg-type]
        site_of[unit.id] = site.id
    unit_for = {"province": province, "city": city}
    people: list[tuple[User, MeetingRole | None]] = []
    for username, full_name, role, meeting_role, where in DEMO_PEOPLE:
        unit = unit_for[where] if isinstance(where, str) else wards[where]
        user = await users.create_user(
            session, username=username, full_name=full_name, password_hash="!",
            role=role, unit_id=unit.id,
            site_id=site_of[unit.id] if role == Role.site_operator else None)
        people.append((user, meeting_role))
    chair = people[1][0]
    meeting = await meetings.create_meeting(
        session, chair, title=DEMO_MEETING, unit_id=province.id,  # type: ignore[arg-type]
        starts_at=utcnow() + timedelta(hours=1),
        description="Họp trực tuyến tỉnh – thành phố – phường/xã")
    for user, meeting_role in people:
        if meeting_role is not None:
            await meetings.store_member(session, meeting.id, meeting_role,  # type: ignore[arg-type]
                                      user_id=user.id)
    for unit in [province, city, *wards]:
        await meetings.store_member(session, meeting.id, MeetingRole.site_operator,  # type: ignore[arg-type]
                                  site_id=site_of[unit.id])
