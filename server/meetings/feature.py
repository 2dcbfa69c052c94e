"""Meetings as a feature: scheduling and membership routes, joining a meeting's channel."""

from __future__ import annotations

from aiohttp import web

from server.core.feature import Feature
from server.core.realtime import Realtime
from server.meetings import projector, routes, sockets


def setup(app: web.Application, realtime: Realtime) -> None:
    sockets.register(realtime)
    app.add_routes(routes.routes)
    app.add_routes(projector.routes)


FEATURE = Feature("meetings", setup)
