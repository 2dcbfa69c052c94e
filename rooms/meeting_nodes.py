"""Which child cascade nodes a meeting is offered to (docs/cascade.md, "Invitation"), and
how many voting members each may report for it (its seats, "Headcounts").

A meeting is mirrored only on the nodes its owner invited, by their unit; a mirror carries
the owner's list, so a city node passes the meeting on to the wards the owner invited. A
node may act on a meeting (join its media, talk on its link, report its attendance) only
while the meeting invites it.
"""

from __future__ import annotations

import re

from sqlmodel import col, delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rooms.errors import Invalid
from rooms.models import MeetingNode

UNIT = re.compile(r"^[\w:.\-]{1,64}$")
MAX_NODES = 200
MAX_SEATS = 10_000  # as attendance.MAX_HEADCOUNT: no node reports more people than that


def clean_units(units: list[str]) -> list[str]:
    """Validated, de-duplicated, sorted unit names (Invalid on a bad one)."""
    if len(units) > MAX_NODES:
        raise Invalid(f"at most {MAX_NODES} nodes")
    for unit in units:
        if not UNIT.match(unit):
            raise Invalid(f"not a node unit: {unit[:80]!r} (letters, digits, ':', '.', '_', '-')")
    return sorted(set(units))


def clean_seats(seats: dict[str, int], units: list[str]) -> dict[str, int]:
    """Seats for invited units only, each 0 to MAX_SEATS (Invalid otherwise)."""
    for unit, count in seats.items():
        if unit not in units:
            raise Invalid(f"seats for {unit[:80]!r}, which is not among the invited nodes")
        if not 0 <= count <= MAX_SEATS:
            raise Invalid(f"seats must be 0 to {MAX_SEATS}")
    return dict(seats)


async def invited_nodes(session: AsyncSession, meeting_id: int) -> list[str]:
    rows = await session.exec(select(MeetingNode.unit).where(MeetingNode.meeting_id == meeting_id)
                              .order_by(col(MeetingNode.unit)))
    return list(rows.all())


async def node_seats(session: AsyncSession, meeting_id: int) -> dict[str, int]:
    """The invited nodes with their seats."""
    # Columns, not entities: set_invited_nodes deletes and re-adds rows of the same key.
    rows = await session.exec(select(MeetingNode.unit, MeetingNode.seats)
                              .where(MeetingNode.meeting_id == meeting_id)
                              .order_by(col(MeetingNode.unit)))
    return {unit: seats for unit, seats in rows.all()}


async def set_invited_nodes(session: AsyncSession, meeting_id: int, units: list[str],
                            seats: dict[str, int] | None = None) -> bool:
    """Replace the invited nodes and their seats; True if anything changed. Without
    `seats`, a unit that stays invited keeps its seats and a new one gets none."""
    units = clean_units(units)
    before = await node_seats(session, meeting_id)
    wanted = clean_seats(seats, units) if seats is not None else before
    after = {unit: wanted.get(unit, 0) for unit in units}
    if after == before:
        return False
    await session.exec(delete(MeetingNode).where(col(MeetingNode.meeting_id) == meeting_id))  # type: ignore[call-overload]
    session.add_all(MeetingNode(meeting_id=meeting_id, unit=u, seats=n) for u, n in after.items())
    return True


async def meetings_offered_to(session: AsyncSession, unit: str) -> set[int]:
    rows = await session.exec(select(MeetingNode.meeting_id).where(MeetingNode.unit == unit))
    return set(rows.all())


async def invitations(session: AsyncSession, unit: str, meeting_ids: set[int]) -> dict[int, int]:
    """Of `meeting_ids`, those that invite `unit` now, with its seats in each."""
    if not meeting_ids:
        return {}
    rows = await session.exec(select(MeetingNode.meeting_id, MeetingNode.seats).where(
        MeetingNode.unit == unit, col(MeetingNode.meeting_id).in_(meeting_ids)))
    return {meeting_id: seats for meeting_id, seats in rows.all()}
