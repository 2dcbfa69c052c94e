"""Attendance, roll call and the quorum (a pure function over per-node headcounts)."""

from __future__ import annotations

import pytest

from rooms import attendance
from rooms.attendance import Headcount, quorum
from rooms.errors import Conflict, Forbidden, Invalid
from rooms.procedure_models import AttendanceStatus, QuorumRule
from tests.rooms.conftest import Demo


@pytest.mark.parametrize("members, present, rule, needed, reached", [
    (4, 2, QuorumRule.majority, 3, False),
    (4, 3, QuorumRule.majority, 3, True),
    (5, 3, QuorumRule.majority, 3, True),
    (9, 5, QuorumRule.two_thirds, 6, False),
    (9, 6, QuorumRule.two_thirds, 6, True),
    (0, 0, QuorumRule.majority, 1, False),
])
def test_quorum_rules(members: int, present: int, rule: QuorumRule, needed: int,
                      reached: bool) -> None:
    q = quorum([Headcount("local", members, present)], rule)
    assert (q.needed, q.reached) == (needed, reached)


def test_quorum_rolls_up_remote_nodes() -> None:
    """A province meeting adds the summaries its city and wards send up."""
    parts = [Headcount("province", 10, 4), Headcount("city", 20, 12), Headcount("ward-1", 5, 0)]
    q = quorum(parts, QuorumRule.majority)
    assert (q.members, q.present, q.needed, q.reached) == (35, 16, 18, False)
    with pytest.raises(ValueError):
        Headcount("bad", 3, 4)


async def test_check_in_records_and_roll_call_feed_the_quorum(demo: Demo) -> None:
    async with demo.db.session() as s:
        row = await attendance.check_in(s, demo.meeting_id, demo.users["daibieu2"],
                                        AttendanceStatus.in_person)
        assert row.site_id is not None  # seated at their ward's site
        await attendance.check_in(s, demo.meeting_id, demo.users["daibieu"],
                                  AttendanceStatus.online)
        with pytest.raises(Invalid):
            await attendance.check_in(s, demo.meeting_id, demo.users["daibieu3"],
                                      AttendanceStatus.absent)
    async with demo.db.session() as s:
        thuky = await demo.access(s, "thuky")
        await attendance.record(s, demo.meeting_id, thuky.user, thuky.role,
                                demo.users["daibieu3"].id, AttendanceStatus.absent,  # type: ignore[arg-type]
                                "Đi công tác")
        kythuat = await demo.access(s, "kythuat")
        with pytest.raises(Forbidden):
            await attendance.record(s, demo.meeting_id, kythuat.user, kythuat.role,
                                    demo.users["daibieu3"].id, AttendanceStatus.online)  # type: ignore[arg-type]
    async with demo.db.session() as s:
        state = await demo.locked(s)
        view = await attendance.attendance_view(s, state)
        q = view["quorum"]
        assert (q["members"], q["present"], q["needed"], q["reached"]) == (4, 2, 3, False)
        absent = next(p for p in view["people"] if p["user_id"] == demo.users["daibieu3"].id)
        assert absent["status"] == "absent" and absent["reason"] == "Đi công tác"
        kythuat = await demo.access(s, "kythuat")
        with pytest.raises(Conflict):  # the chair has not started the roll call
            await attendance.answer_roll_call(s, state, kythuat.user, kythuat.role,
                                              kythuat.user.site_id, True, 7)  # type: ignore[arg-type]
        state.roll_call_open = True
        await attendance.answer_roll_call(s, state, kythuat.user, kythuat.role,
                                          kythuat.user.site_id, True, 7)  # type: ignore[arg-type]
        with pytest.raises(Forbidden):
            await attendance.answer_roll_call(s, state, kythuat.user, kythuat.role,
                                              kythuat.user.site_id + 1, True, 7)  # type: ignore[operator]
        await attendance.set_site_seats(s, demo.meeting_id, kythuat.user.site_id, 10)  # type: ignore[arg-type]
        q = (await attendance.attendance_view(s, state))["quorum"]
        assert (q["members"], q["present"], q["reached"]) == (14, 9, True)
