"""The paperless documents as a feature: runtime (app[DOCUMENTS]), routes, socket events."""

from __future__ import annotations

from aiohttp import web

from server.core.feature import Feature
from server.core.realtime import Realtime
from server.documents import pages, routes, sockets, upload, versions
from server.documents.keys import DOCUMENTS
from server.documents.runtime import create_runtime, documents_context


def setup(app: web.Application, realtime: Realtime) -> None:
    app[DOCUMENTS] = create_runtime(app)
    sockets.register(realtime)
    app.add_routes(upload.routes)
    app.add_routes(routes.routes)
    app.add_routes(pages.routes)
    app.add_routes(versions.routes)


# The runtime's worker pool and background writers start after core's database (migrated:
# unfinished conversions resume from it) and close before it.
FEATURE = Feature("documents", setup, provides=(DOCUMENTS,), lifespan=documents_context)
