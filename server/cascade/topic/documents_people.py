"""People of other nodes as this node's documents see them: an annotation's author, a
document's uploader, the presenter. Each is a placeholder user that can never log in (the
same rows as the floor's, rooms/remote_floor.py: `~<origin unit>~<user id>`), so the
documents feature's own code (annotation authors, the presenter row, `created_by`) works on
every node unchanged. `0` stands for the node itself (a mirrored document's uploader)."""

from __future__ import annotations

import hashlib

from pydantic import Field
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from rooms.models import Role, User
from server.cascade.schemas import NodeSchema

PREFIX = "~"  # no login name starts with it (rooms/users.py)


class Person(NodeSchema):
    """Someone at node `origin` (its local user id there), with the name to show."""

    origin: str = Field(min_length=1, max_length=64, pattern=r"^[\w:.\-]{1,64}$")
    user: int = Field(ge=0, le=2**31 - 1)
    name: str = Field(max_length=200)


def username_of(origin: str, user_id: int) -> str:
    name = f"{PREFIX}{origin}~{user_id}"
    return name if len(name) <= 64 else PREFIX + hashlib.sha256(name.encode()).hexdigest()[:63]


async def local_user(session: AsyncSession, person: Person) -> int:
    """This node's user id for `person` (made on first sight; the name follows the latest)."""
    username = username_of(person.origin, person.user)
    user = (await session.exec(select(User).where(User.username == username))).first()
    name = person.name[:200] or person.origin
    if user is None:
        user = User(username=username, full_name=name, password_hash="!",
                    role=Role.delegate, disabled=True)
        session.add(user)
        await session.flush()
    elif user.full_name != name:
        user.full_name = name
        session.add(user)
    assert user.id is not None
    return user.id


async def person_of(session: AsyncSession, unit: str, user_id: int) -> Person | None:
    """A local user as other nodes know them; None for another node's placeholder (what they
    do was not done here) or an unknown id."""
    user = await session.get(User, user_id)
    if user is None or user.username.startswith(PREFIX):
        return None
    return Person(origin=unit, user=user_id, name=user.full_name)
