"""First start: an admin with a random password (printed once); --demo data and logins."""

from __future__ import annotations

from rooms import demo, units, users
from rooms.db import Database
from rooms.models import Role, UnitKind
from server.passwords import hash_password, new_password


async def ensure_admin(db: Database) -> tuple[str, str] | None:
    """Returns (username, password) when it had to create the first admin."""
    async with db.session() as s:
        if await users.admin_exists(s):
            return None
        roots = await units.unit_tree(s)
        unit = roots[0].unit if roots else await units.create_unit(
            s, "Đơn vị gốc", UnitKind.province, None)
        password = new_password()
        await users.create_user(s, username="admin", full_name="Quản trị viên",
                                password_hash=hash_password(password), role=Role.admin,
                                unit_id=unit.id)
        return "admin", password


async def seed_demo(db: Database) -> list[demo.DemoLogin]:
    async with db.session() as s:
        return await demo.seed_demo(s, hash_password, new_password)
