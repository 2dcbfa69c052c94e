"""The meeting procedure as a feature: its live state (app[LIVE], which its routes and the
cascade read), socket events and routes."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from server.core.feature import Feature
from server.core.realtime import Realtime
from server.procedure import routes, sockets
from server.procedure.keys import LIVE
from server.procedure.live import ProcedureLive


def setup(app: web.Application, realtime: Realtime) -> None:
    app[LIVE] = ProcedureLive(app)
    sockets.register(realtime)
    app.add_routes(routes.routes)


async def lifespan(app: web.Application) -> AsyncIterator[None]:
    """Opened after core's database (migrated); closed before it: pushes and ballot batches
    stop and unwind while the pool is still open."""
    live = app[LIVE]
    await live.start()
    yield
    await live.close()


FEATURE = Feature("procedure", setup, provides=(LIVE,), lifespan=lifespan)
