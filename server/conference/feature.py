"""The video conference as a feature: the media hub (app[MEDIA]), its socket events, the
stats route and metrics. The procedure's floor drives the main view through the bus."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from media import MediaError
from server.conference import sockets
from server.conference.hub import (
    MediaCollector,
    MediaHub,
    MediaMetrics,
    media_config,
    media_failure,
)
from server.conference.keys import MEDIA
from server.core import keys
from server.core.feature import Feature
from server.core.realtime import Realtime
from server.procedure.events import FloorChanged


def setup(app: web.Application, realtime: Realtime) -> None:
    registry, settings = app[keys.REGISTRY], app[keys.SETTINGS]
    # Constructing the hub allocates nothing (no sockets, no tasks); it starts and closes
    # with the app.
    hub = app[MEDIA] = MediaHub(app, media_config(settings), MediaMetrics.create(registry),
                                stats_interval_s=settings.media_timings.stats_interval_s)
    registry.register(MediaCollector(app))
    realtime.map_errors(MediaError, media_failure)  # bad SDP, codec, state: a clear ack
    sockets.register(realtime)
    app.add_routes(sockets.routes)
    app[keys.BUS].subscribe(FloorChanged, hub.on_floor_changed)  # the speaker: main view


async def lifespan(app: web.Application) -> AsyncIterator[None]:
    hub = app[MEDIA]
    hub.start()
    yield
    await hub.close()


FEATURE = Feature("conference", setup, provides=(MEDIA,), lifespan=lifespan)
