"""The cascade as a feature: the routes that place a meeting's nodes, the administrators'
view of the links, and, on a node configured with HOPSO_NODE_UNIT, the node's links
(server/cascade/node.py)."""

from __future__ import annotations

from aiohttp import web

from server.cascade import admin, node, routes
from server.cascade.topic import floor_sockets
from server.conference.keys import MEDIA
from server.core.feature import Feature
from server.core.realtime import Realtime
from server.procedure.keys import LIVE


def setup(app: web.Application, realtime: Realtime) -> None:
    node.setup(app)
    floor_sockets.register(realtime)  # a lower level's chair and its floor requests
    app.add_routes(routes.routes)
    app.add_routes(admin.routes)


# NODE (server/cascade/keys.py) is set only on a configured node: not declared as provided.
FEATURE = Feature("cascade", setup, needs=(MEDIA, LIVE), lifespan=node.lifespan)
