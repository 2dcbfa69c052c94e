"""Floor requests that belong to people of other cascade nodes (docs/cascade.md, "Floor
across nodes"): a node keeps its own rows for them (FloorRequest with a placeholder user who
can never log in, `proxy_user`), so grants, skips, timers and speaking totals run on the
same code everywhere; `FloorOrigin` says where the person is (node, site, unit), which the
floor view shows. `CascadeRef` maps the owner's ids (votes, agenda items, floor requests)
to this node's rows."""

from __future__ import annotations

import hashlib
from typing import Any

from sqlmodel import Field, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rooms.models import Role, User

PROXY_PREFIX = "~"  # no login name starts with it (rooms/users.py _USERNAME)


class FloorOrigin(SQLModel, table=True):
    """Where the person of a floor request is, when not on this node (or escalated)."""

    request_id: int = Field(foreign_key="floorrequest.id", primary_key=True)
    origin: str = Field(max_length=64)  # the node's unit
    remote_id: int = 0  # the request's id at its origin node (0: unknown)
    site: str = Field(default="", max_length=200)
    unit: str = Field(default="", max_length=200)


class CascadeRef(SQLModel, table=True):
    """An id of another node's row (`ref`, e.g. "vote:12" for the owner's vote 12, or
    "floor:ward:x:17") and this node's row for it."""

    meeting_id: int = Field(foreign_key="meeting.id", primary_key=True)
    ref: str = Field(primary_key=True, max_length=120)
    local_id: int


async def ref_get(session: AsyncSession, meeting_id: int, ref: str) -> int | None:
    row = await session.get(CascadeRef, (meeting_id, ref))
    return row.local_id if row is not None else None


async def ref_put(session: AsyncSession, meeting_id: int, ref: str, local_id: int) -> None:
    row = await session.get(CascadeRef, (meeting_id, ref))
    if row is None:
        session.add(CascadeRef(meeting_id=meeting_id, ref=ref, local_id=local_id))
    else:
        row.local_id = local_id
        session.add(row)


async def refs(session: AsyncSession, meeting_id: int, prefix: str) -> dict[str, int]:
    rows = await session.exec(select(CascadeRef).where(
        CascadeRef.meeting_id == meeting_id, col(CascadeRef.ref).startswith(prefix)))
    return {r.ref: r.local_id for r in rows.all()}


async def proxy_user(session: AsyncSession, origin: str, user_id: int, name: str) -> User:
    """The placeholder for person `user_id` of node `origin`: disabled, no password, so it
    never logs in; its name follows what the origin last said."""
    username = f"{PROXY_PREFIX}{origin}~{user_id}"
    if len(username) > 64:
        username = PROXY_PREFIX + hashlib.sha256(username.encode()).hexdigest()[:63]
    user = (await session.exec(select(User).where(User.username == username))).first()
    if user is None:
        user = User(username=username, full_name=name[:200] or "?", password_hash="!",
                    role=Role.delegate, disabled=True)
        session.add(user)
        await session.flush()
    elif name and user.full_name != name[:200]:
        user.full_name = name[:200]
        session.add(user)
    return user


async def origins(session: AsyncSession, request_ids: list[int]) -> dict[int, FloorOrigin]:
    if not request_ids:
        return {}
    rows = await session.exec(select(FloorOrigin).where(
        col(FloorOrigin.request_id).in_(request_ids)))
    return {r.request_id: r for r in rows.all()}


def marks(row: FloorOrigin | None) -> dict[str, Any]:
    """What the floor view adds to a request of another node's person."""
    if row is None:
        return {}
    return {"origin": row.origin, "remote_id": row.remote_id or None,
            "remote_site": row.site or None, "unit": row.unit or None}
