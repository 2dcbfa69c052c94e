"""The administrators' view of the cascade (docs/cascade.md): the /admin/nodes page, this
node's links at GET /api/admin/nodes, and rotating or revoking a child node's credential."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import aiohttp_jinja2
from aiohttp import web
from yarl import URL

from rooms.errors import NotFound
from server.cascade import credentials as node_credentials
from server.cascade.keys import NODE
from server.core import keys
from server.core.auth import require_admin
from server.core.http_util import Body, read_body

if TYPE_CHECKING:
    from server.cascade.link import NodeCascade

routes = web.RouteTableDef()


class NodeSecret(Body):
    secret: str


@routes.get("/admin/nodes")
@aiohttp_jinja2.template("admin_nodes.html")
async def admin_nodes(request: web.Request) -> dict[str, Any]:
    """This node, its parent and child links; web_client/static/js/admin-nodes.js refreshes
    it from GET /api/admin/nodes."""
    require_admin(request)
    node = request.app.get(NODE)
    return {"node_unit": node.settings.unit if node else None,
            "node_path": list(node.path) if node else []}


MAX_REFUSAL_CHARS = 300  # a refusal quotes what a connecting node sent


def _public_url(url: Any) -> Any:
    """The parent's address without any user:password part."""
    if not isinstance(url, str):
        return url
    try:
        return str(URL(url).with_user(None))
    except ValueError:
        return None


@routes.get("/api/admin/nodes")
async def node_view(request: web.Request) -> web.Response:
    require_admin(request)
    node = request.app.get(NODE)
    if node is None:
        return web.json_response({"configured": False})
    view = node.view()
    if view["parent"] is not None:
        view["parent"] = {**view["parent"], "url": _public_url(view["parent"].get("url"))}
    view["refusals"] = [r[:MAX_REFUSAL_CHARS] for r in view["refusals"]]
    revoked = await node_credentials.revoked_units(request.app[keys.DB])
    return web.json_response({"configured": True, **view,
                              "revoked": [u for u in revoked if u not in node.credentials]})


def _node(request: web.Request) -> NodeCascade:
    node = request.app.get(NODE)
    if node is None:
        raise NotFound("this server is not a cascade node (HOPSO_NODE_UNIT is not set)",
                       code="not_configured")
    return node


@routes.post("/api/admin/nodes/children/{unit}/credential")
async def rotate_node_credential(request: web.Request) -> web.Response:
    require_admin(request)
    node = _node(request)
    unit = request.match_info["unit"]
    body = await read_body(request, NodeSecret)
    await node_credentials.rotate(request.app[keys.DB], node, unit, body.secret)
    return web.json_response({"unit": unit, "credential": "rotated"})


@routes.delete("/api/admin/nodes/children/{unit}/credential")
async def revoke_node_credential(request: web.Request) -> web.Response:
    require_admin(request)
    node = _node(request)
    unit = request.match_info["unit"]
    if not await node_credentials.revoke(request.app[keys.DB], node, unit):
        raise NotFound(f"{unit[:64]!r} has no credential on this node")
    return web.json_response({"unit": unit, "credential": "revoked"})
