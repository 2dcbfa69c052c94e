"""Which child cascade nodes a meeting is offered to: GET/PUT /api/meetings/{id}/nodes."""

from __future__ import annotations

from aiohttp import web

from rooms import meeting_nodes
from rooms.errors import Conflict
from rooms.permissions import Action
from server.cascade.keys import NODE, STATE
from server.core import keys
from server.core.auth import current_user, meeting_access
from server.core.http_util import Body, read_body

routes = web.RouteTableDef()


class InvitedNodes(Body):
    nodes: list[str]
    # Voting members each node's subtree may report (rooms.attendance); absent: a node that
    # stays invited keeps its seats, a new one has none.
    seats: dict[str, int] | None = None


def _children(request: web.Request) -> list[str]:
    node = request.app.get(NODE)
    return sorted(node.credentials) if node is not None else []


@routes.get("/api/meetings/{meeting_id}/nodes")
async def get_nodes(request: web.Request) -> web.Response:
    async with request.app[keys.DB].session() as s:
        access = await meeting_access(s, request, Action.view)
        seats = await meeting_nodes.node_seats(s, access.meeting.id)  # type: ignore[arg-type]
    return web.json_response({"configured": NODE in request.app, "nodes": sorted(seats),
                              "seats": seats, "children": _children(request),
                              "mirrored": access.meeting.cascade_key is not None})


@routes.put("/api/meetings/{meeting_id}/nodes")
async def put_nodes(request: web.Request) -> web.Response:
    current_user(request)  # 401 before the body is read
    body = await read_body(request, InvitedNodes)
    async with request.app[keys.DB].session() as s:
        access = await meeting_access(s, request, Action.manage)
        if access.meeting.cascade_key is not None:
            raise Conflict("this meeting is organised by a higher level, which invites the "
                           "nodes", code="mirrored")
        await meeting_nodes.set_invited_nodes(s, access.meeting.id, body.nodes,  # type: ignore[arg-type]
                                              body.seats)
        seats = await meeting_nodes.node_seats(s, access.meeting.id)  # type: ignore[arg-type]
    node = request.app.get(NODE)
    if node is not None:  # committed: the children ask for their meetings now
        await node.offers_changed()
    return web.json_response({"configured": NODE in request.app, "nodes": sorted(seats),
                              "seats": seats, "children": _children(request),
                              "mirrored": False})


@routes.get("/api/meetings/{meeting_id}/sites")
async def get_sites(request: web.Request) -> web.Response:
    """The nodes the meeting invites, reachable now or not, and the reports this node still
    holds for it (a chair checks it before closing a vote: an unreachable ward's ballots
    are stored there and count only if they arrive before the close)."""
    async with request.app[keys.DB].session() as s:
        access = await meeting_access(s, request, Action.view)
    state = request.app.get(STATE)
    if state is None:
        return web.json_response({"configured": False, "key": None, "held_reports": 0,
                                  "refused_reports": 0, "sites": []})
    assert access.meeting.id is not None
    return web.json_response({"configured": True, **await state.sites(access.meeting.id)})
