"""First start: an admin with a random password (printed once); --demo data and logins.

Both run before the server serves anything, so they hash on the spot with `hasher`
(server.core.passwords.password_hasher of the settings)."""

from __future__ import annotations

from argon2 import PasswordHasher

from rooms import demo, units, users
from rooms.db import Database
from rooms.models import Role, UnitKind
from server.core.passwords import new_password


async def ensure_admin(db: Database, hasher: PasswordHasher) -> tuple[str, str] | None:
    """Returns (username, password) when it had to create the first admin."""
    async with db.session() as s:
        if await users.admin_exists(s):
            return None
        roots = await units.unit_tree(s)
        unit = roots[0].unit if roots else await units.create_unit(
            s, "Đơn vị gốc", UnitKind.province, None)
        password = new_password()
        await users.create_user(s, username="admin", full_name="Quản trị viên",
                                password_hash=hasher.hash(password), role=Role.admin,
                                unit_id=unit.id)
        return "admin", password


async def seed_demo(db: Database, hasher: PasswordHasher) -> list[demo.DemoLogin]:
    async with db.session() as s:
        return await demo.seed_demo(s, hasher.hash, new_password)
