"""The meeting procedure as a feature: its live state (app[LIVE], which its routes and the
cascade read), socket events and routes."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from server.core.feature import Feature
from server.core.realtime import Realtime
from server.procedure import (
    lifecycle,
    minutes_signing,
    routes,
    sockets,
    state_routes,
    vote_signing,
)
from server.procedure.keys import LIVE, VOTE_TIMERS
from server.procedure.live import ProcedureLive


def setup(app: web.Application, realtime: Realtime) -> None:
    app[LIVE] = ProcedureLive(app)
    app[VOTE_TIMERS] = lifecycle.VoteTimers(app)
    sockets.register(realtime)
    app.add_routes(routes.routes)
    app.add_routes(state_routes.routes)
    minutes_signing.setup(app)  # draft, review and PAdES signatures of the minutes
    app.add_routes(vote_signing.routes)  # signed vote results, checking a signed file
    lifecycle.subscribe(app)  # a closed meeting's procedure is closed out


async def lifespan(app: web.Application) -> AsyncIterator[None]:
    """Opened after core's database (migrated); closed before it: pushes and ballot batches
    stop and unwind while the pool is still open."""
    live = app[LIVE]
    await live.start()
    await app[VOTE_TIMERS].start()
    yield
    await app[VOTE_TIMERS].close()
    await live.close()


FEATURE = Feature("procedure", setup, provides=(LIVE,), lifespan=lifespan)
