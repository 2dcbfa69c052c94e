"""Meeting chat as a feature: its socket events, routes and the senders' budgets."""

from __future__ import annotations

from aiohttp import web

from server.chat import routes, sockets
from server.chat.keys import LIMITS
from server.chat.live import ChatLimits
from server.core.feature import Feature
from server.core.realtime import Realtime


def setup(app: web.Application, realtime: Realtime) -> None:
    app[LIMITS] = ChatLimits()
    sockets.register(realtime)
    app.add_routes(routes.routes)


FEATURE = Feature("chat", setup, provides=(LIMITS,))
