"""Administration as a feature: the admin API and the audit pages."""

from __future__ import annotations

from aiohttp import web

from server.admin import pages, routes
from server.core.feature import Feature
from server.core.realtime import Realtime


def setup(app: web.Application, _realtime: Realtime) -> None:
    app.add_routes(routes.routes)
    app.add_routes(pages.routes)


FEATURE = Feature("admin", setup)
