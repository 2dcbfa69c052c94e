"""Minutes and the audit trail at the meeting's owner (issue 13, item 5; docs/cascade.md,
"Minutes and audit at the owner").

`attendance.people` (up): whenever attendance changes on a mirror, the node reports who of
its voting members is there (names, status, site), a snapshot with a growing revision; the
owner keeps the latest per node (rooms/remote_attendance.py) for its minutes, records what
the node said in its audit chain, and refuses a list longer than the node's seats, from a
node the meeting does not invite, or older than the one it has (`stale`). Speakers and
ballots of every node are already the owner's (server/cascade/topic/floor.py, votes.py).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aiohttp import web
from pydantic import Field

from rooms import attendance, audit, meeting_nodes, procedure
from rooms.models import Meeting
from rooms.remote_attendance import RemoteAttendance
from server.cascade.schemas import NodeError, NodeSchema, validate
from server.cascade.topic.vote_receive import NODE_REPORTED
from server.cascade.topics import Report, Topic
from server.core import keys
from server.procedure.events import AttendanceChanged
from server.procedure.keys import LIVE

if TYPE_CHECKING:
    from server.cascade.state import MeetingState

PEOPLE = "attendance.people"
MAX_PEOPLE = 2000  # names of one node's voting members (64 kB per report)


class Person(NodeSchema):
    user: int = Field(ge=1)
    name: str = Field(max_length=200)
    status: str | None = Field(default=None, pattern=r"^(in_person|online|absent)$")
    site: str = Field(default="", max_length=200)
    reason: str = Field(default="", max_length=500)


class PeopleData(NodeSchema):
    revision: int = Field(ge=0)
    people: list[Person] = Field(max_length=MAX_PEOPLE)


def install(app: web.Application, state: MeetingState) -> None:
    reported: dict[int, int] = {}  # meeting -> the last revision stored for the owner

    async def on_attendance(event: AttendanceChanged) -> None:
        async with app[LIVE].lock(event.meeting_id), app[keys.DB].session() as s:
            meeting = await s.get(Meeting, event.meeting_id)
            if meeting is None or meeting.cascade_key is None:
                return
            data = await people_of(s, event.meeting_id)
            # Check-ins in a burst each publish an event; the snapshot read after the
            # burst already has them all: the same revision is not sent twice.
            if data["revision"] <= reported.get(event.meeting_id, -1):
                return
            reported[event.meeting_id] = data["revision"]
        await state.report(event.meeting_id, PEOPLE, data)

    async def receive(meeting_id: int, via: str, report: Report) -> dict[str, Any]:
        return await receive_people(app, meeting_id, via, report)

    state.register(Topic(PEOPLE, PeopleData, "up", receive=receive))
    app[keys.BUS].subscribe(AttendanceChanged, on_attendance)


async def people_of(s: Any, meeting_id: int) -> dict[str, Any]:
    """This node's voting members and their attendance, as the minutes list them."""
    seq = (await procedure.read_state(s, meeting_id)).seq
    view = await attendance.attendance_view(s, await procedure.read_state(s, meeting_id))
    return {"revision": seq, "people": [
        {"user": p["user_id"], "name": p["name"], "status": p["status"],
         "site": p["site"] or "", "reason": p["reason"] or ""} for p in view["people"]]}


async def receive_people(app: web.Application, meeting_id: int, via: str,
                         report: Report) -> dict[str, Any]:
    data = validate(PeopleData, report.data)
    async with app[keys.DB].session() as s:
        seats = await meeting_nodes.node_seats(s, meeting_id)
        if report.origin != via and report.origin not in seats:
            raise NodeError("forbidden", f"{report.origin[:64]} is not among the meeting's "
                            "nodes")
        allowed = seats.get(report.origin, seats.get(via, 0))
        if len(data.people) > allowed:
            raise NodeError("over_seats", f"{report.origin} lists {len(data.people)} members; "
                            f"it has {allowed} seats")
        if len({p.user for p in data.people}) != len(data.people):
            raise NodeError("invalid", "each person once")
        row = await s.get(RemoteAttendance, (meeting_id, report.origin))
        if row is not None and row.via != via:
            raise NodeError("forbidden", f"{report.origin} reports through {row.via}")
        if row is not None and data.revision <= row.revision:
            raise NodeError("stale", f"revision {data.revision} after {row.revision}")
        row = row or RemoteAttendance(meeting_id=meeting_id, origin=report.origin, via=via)
        row.revision = data.revision
        row.people_json = json.dumps([p.model_dump() for p in data.people], ensure_ascii=False)
        s.add(row)
        present = sum(1 for p in data.people if p.status in ("in_person", "online"))
        await audit.record(s, meeting_id, None, NODE_REPORTED, {
            "topic": PEOPLE, "report": report.id, "origin": report.origin, "via": via,
            "revision": data.revision, "members": len(data.people), "present": present})
        await s.commit()
    return {"revision": data.revision, "people": len(data.people)}
