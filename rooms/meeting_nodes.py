"""Which child cascade nodes a meeting is offered to (docs/cascade.md, "Invitation").

A meeting is mirrored only on the nodes its owner invited, by their unit; a mirror carries
the owner's list, so a city node passes the meeting on to the wards the owner invited.
"""

from __future__ import annotations

import re

from sqlmodel import col, delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rooms.errors import Invalid
from rooms.models import MeetingNode

UNIT = re.compile(r"^[\w:.\-]{1,64}$")
MAX_NODES = 200


def clean_units(units: list[str]) -> list[str]:
    """Validated, de-duplicated, sorted unit names (Invalid on a bad one)."""
    if len(units) > MAX_NODES:
        raise Invalid(f"at most {MAX_NODES} nodes")
    for unit in units:
        if not UNIT.match(unit):
            raise Invalid(f"not a node unit: {unit[:80]!r} (letters, digits, ':', '.', '_', '-')")
    return sorted(set(units))


async def invited_nodes(session: AsyncSession, meeting_id: int) -> list[str]:
    rows = await session.exec(select(MeetingNode.unit).where(MeetingNode.meeting_id == meeting_id)
                              .order_by(col(MeetingNode.unit)))
    return list(rows.all())


async def set_invited_nodes(session: AsyncSession, meeting_id: int, units: list[str]) -> bool:
    """Replace the invited nodes; True if the list changed."""
    units = clean_units(units)
    if await invited_nodes(session, meeting_id) == units:
        return False
    await session.exec(delete(MeetingNode).where(col(MeetingNode.meeting_id) == meeting_id))  # type: ignore[call-overload]
    session.add_all(MeetingNode(meeting_id=meeting_id, unit=u) for u in units)
    return True


async def meetings_offered_to(session: AsyncSession, unit: str) -> set[int]:
    rows = await session.exec(select(MeetingNode.meeting_id).where(MeetingNode.unit == unit))
    return set(rows.all())
