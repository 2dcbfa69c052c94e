"""People: accounts with a global role, a unit and optionally a site."""

from __future__ import annotations

import re

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rooms.errors import Conflict, Invalid, NotFound
from rooms.models import Role, User
from rooms.units import get_site, get_unit

_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
# Placeholders of other nodes' people (the cascade: rooms/remote_floor.py,
# server/cascade/topic/documents_people.py) are named `~<node>~<id>`; no account name can
# start with it. They are not accounts here: never listed to the admin, never logged in.
PLACEHOLDER_PREFIX = "~"


def is_placeholder(user: User) -> bool:
    return user.username.startswith(PLACEHOLDER_PREFIX)


def user_dict(user: User) -> dict[str, object]:
    return {"id": user.id, "username": user.username, "full_name": user.full_name,
            "role": user.role.value, "unit_id": user.unit_id, "site_id": user.site_id,
            "disabled": user.disabled}


async def get_user(session: AsyncSession, user_id: int) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound(f"user {user_id} not found")
    return user


async def find_user(session: AsyncSession, username: str) -> User | None:
    """The account of this login name (never another node's placeholder person)."""
    name = username.strip().lower()
    if name.startswith(PLACEHOLDER_PREFIX):
        return None
    rows = await session.exec(select(User).where(User.username == name))
    return rows.first()


async def get_account(session: AsyncSession, user_id: int) -> User:
    """A local account (an admin may change it); another node's placeholder is not found."""
    user = await get_user(session, user_id)
    if is_placeholder(user):
        raise NotFound(f"user {user_id} is a person of another node, not an account here")
    return user


async def create_user(session: AsyncSession, *, username: str, full_name: str,
                      password_hash: str, role: Role, unit_id: int | None = None,
                      site_id: int | None = None) -> User:
    username = username.strip().lower()
    if not _USERNAME.match(username):
        raise Invalid("username: 2–64 of a-z, 0-9, '.', '_', '-'")
    if await find_user(session, username):
        raise Conflict(f"username {username!r} is taken")
    if unit_id is not None:
        await get_unit(session, unit_id)
    if site_id is not None:
        await get_site(session, site_id)
    full_name = " ".join(full_name.split())
    if not 1 <= len(full_name) <= 200:
        raise Invalid("full_name must be 1 to 200 characters")
    user = User(username=username, full_name=full_name, password_hash=password_hash, role=role,
                unit_id=unit_id, site_id=site_id)
    session.add(user)
    await session.flush()
    return user


async def admin_exists(session: AsyncSession) -> bool:
    rows = await session.exec(select(User).where(User.role == Role.admin).limit(1))
    return rows.first() is not None


async def all_users(session: AsyncSession) -> list[User]:
    """The accounts of this node, without other nodes' placeholder people."""
    rows = await session.exec(select(User)
                              .where(col(User.username).not_like(f"{PLACEHOLDER_PREFIX}%"))
                              .order_by(User.username))  # type: ignore[arg-type]
    return list(rows.all())
