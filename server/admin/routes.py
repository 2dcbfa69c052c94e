"""Admin REST routes: the units tree, sites and users (the cascade's: server/cascade/admin.py)."""

from __future__ import annotations

from aiohttp import web

from rooms import units, users
from rooms.errors import Invalid
from rooms.models import Role, UnitKind
from server.core import keys
from server.core.auth import end_all_sessions, forget_sessions, require_admin
from server.core.http_util import Body, int_id, read_body
from server.core.passwords import MIN_PASSWORD_LENGTH

routes = web.RouteTableDef()


class NewUnit(Body):
    name: str
    kind: UnitKind
    parent_id: int | None = None


class UnitPatch(Body):
    name: str | None = None
    parent_id: int | None = None
    move: bool = False  # parent_id=None is meaningful (make a root), so moving is explicit


class MergeUnit(Body):
    into_id: int


class NewSite(Body):
    name: str
    unit_id: int


class NewUser(Body):
    username: str
    full_name: str
    password: str
    role: Role
    unit_id: int | None = None
    site_id: int | None = None



class UserPatch(Body):
    disabled: bool | None = None
    role: Role | None = None
    password: str | None = None
    full_name: str | None = None


def _check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise Invalid(f"password must be at least {MIN_PASSWORD_LENGTH} characters")
    return password


@routes.get("/api/units")
async def list_units(request: web.Request) -> web.Response:
    require_admin(request)
    async with request.app[keys.DB].session() as s:
        return web.json_response({"units": [n.to_dict() for n in await units.unit_tree(s)]})


@routes.post("/api/units")
async def create_unit(request: web.Request) -> web.Response:
    admin = require_admin(request)
    body = await read_body(request, NewUnit)
    async with request.app[keys.DB].session() as s:
        unit = await units.create_unit(s, body.name, body.kind, body.parent_id, admin.id)
        return web.json_response({"id": unit.id, "name": unit.name}, status=201)


@routes.patch("/api/units/{unit_id}")
async def patch_unit(request: web.Request) -> web.Response:
    admin = require_admin(request)
    unit_id = int_id(request, "unit_id")
    body = await read_body(request, UnitPatch)
    async with request.app[keys.DB].session() as s:
        if body.name is not None:
            await units.rename_unit(s, unit_id, body.name, admin.id)
        if body.move:
            await units.reparent_unit(s, unit_id, body.parent_id, admin.id)
        unit = await units.get_unit(s, unit_id)
        return web.json_response({"id": unit.id, "name": unit.name, "parent_id": unit.parent_id})


@routes.post("/api/units/{unit_id}/merge")
async def merge_unit(request: web.Request) -> web.Response:
    admin = require_admin(request)
    unit_id = int_id(request, "unit_id")
    body = await read_body(request, MergeUnit)
    async with request.app[keys.DB].session() as s:
        target = await units.merge_unit(s, unit_id, body.into_id, admin.id)
        return web.json_response({"merged": unit_id, "into": target.id})


@routes.get("/api/units/{unit_id}/history")
async def unit_history(request: web.Request) -> web.Response:
    require_admin(request)
    unit_id = int_id(request, "unit_id")
    async with request.app[keys.DB].session() as s:
        events = await units.unit_history(s, unit_id)
    return web.json_response({"events": [
        {"change": e.change.value, "old": e.old_value, "new": e.new_value,
         "by_user_id": e.by_user_id, "at": e.at.isoformat()} for e in events]})


@routes.post("/api/sites")
async def create_site(request: web.Request) -> web.Response:
    require_admin(request)
    body = await read_body(request, NewSite)
    async with request.app[keys.DB].session() as s:
        site = await units.create_site(s, body.name, body.unit_id)
        return web.json_response({"id": site.id, "name": site.name, "unit_id": site.unit_id},
                                 status=201)


@routes.get("/api/users")
async def list_users(request: web.Request) -> web.Response:
    require_admin(request)
    async with request.app[keys.DB].session() as s:
        return web.json_response({"users": [users.user_dict(u) for u in await users.all_users(s)]})


@routes.post("/api/users")
async def create_user(request: web.Request) -> web.Response:
    require_admin(request)
    body = await read_body(request, NewUser)
    # Hashed off the event loop, before a database connection is taken.
    password_hash = await request.app[keys.PASSWORDS].hash(_check_password(body.password))
    async with request.app[keys.DB].session() as s:
        user = await users.create_user(
            s, username=body.username, full_name=body.full_name,
            password_hash=password_hash, role=body.role,
            unit_id=body.unit_id, site_id=body.site_id)
        return web.json_response(users.user_dict(user), status=201)


@routes.patch("/api/users/{user_id}")
async def patch_user(request: web.Request) -> web.Response:
    admin = require_admin(request)
    user_id = int_id(request, "user_id")
    body = await read_body(request, UserPatch)
    password_hash = (None if body.password is None else
                     await request.app[keys.PASSWORDS].hash(_check_password(body.password)))
    async with request.app[keys.DB].session() as s:
        user = await users.get_account(s, user_id)  # never a placeholder: it cannot log in
        if body.disabled is not None:
            if user.id == admin.id and body.disabled:
                raise Invalid("you cannot disable your own account")
            user.disabled = body.disabled
        if body.role is not None:
            user.role = body.role
        if body.full_name is not None:
            user.full_name = " ".join(body.full_name.split())[:200] or user.full_name
        if password_hash is not None:
            user.password_hash = password_hash
        if body.disabled or body.password is not None:
            await end_all_sessions(s, user_id)  # disabling or resetting logs them out everywhere
        s.add(user)
        answer = users.user_dict(user)
    # After the commit: their sockets see the change (or are refused) from their next event.
    forget_sessions(request.app, user_id=user_id)
    return web.json_response(answer)

