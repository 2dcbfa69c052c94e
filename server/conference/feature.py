"""The video conference as a feature: the media hub (app[MEDIA]), its socket events, the
stats route and metrics. Through the bus, the procedure's floor drives the main view and a
closed meeting closes its room."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from media import MediaError
from server.conference import sockets
from server.conference.config import media_config, media_failure
from server.conference.hub import MediaHub
from server.conference.keys import MEDIA
from server.conference.metrics import MediaCollector, MediaMetrics
from server.core import keys
from server.core.feature import Feature
from server.core.realtime import Realtime
from server.meetings.events import MeetingClosed
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

    async def floor_changed(event: FloorChanged) -> None:  # the speaker: everyone's main view
        hub.floor_changed(event.meeting_id, event.speaking, event.name, event.site)

    async def meeting_closed(event: MeetingClosed) -> None:  # its media ends
        await hub.close_room(event.meeting_id)
    # In whichever process holds the meeting's media: relayed ones too.
    app[keys.BUS].subscribe(FloorChanged, floor_changed, relayed=True)
    app[keys.BUS].subscribe(MeetingClosed, meeting_closed, relayed=True)


async def lifespan(app: web.Application) -> AsyncIterator[None]:
    hub = app[MEDIA]
    hub.start()
    yield
    await hub.close()


FEATURE = Feature("conference", setup, provides=(MEDIA,), lifespan=lifespan)
