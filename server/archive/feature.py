"""The archive as a feature: over the documents (their worker pool and store) and the
recording (which recordings are still running), so listed after both."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from server.archive import routes
from server.archive.keys import ARCHIVES, RETENTION
from server.archive.retention import Retention
from server.archive.service import Archives
from server.core.feature import Feature
from server.core.realtime import Realtime
from server.documents.keys import DOCUMENTS
from server.recording.keys import RECORDINGS


def setup(app: web.Application, _realtime: Realtime) -> None:
    app[ARCHIVES] = Archives(app)
    app[RETENTION] = Retention(app)
    app.router.add_routes(routes.routes)


async def lifespan(app: web.Application) -> AsyncIterator[None]:
    async for _ in app[RETENTION].run(app):
        yield
    await app[ARCHIVES].jobs.close()  # an unfinished job leaves only its .partial, removed


FEATURE = Feature("archive", setup, needs=(DOCUMENTS, RECORDINGS), provides=(ARCHIVES, RETENTION),
                  lifespan=lifespan)
