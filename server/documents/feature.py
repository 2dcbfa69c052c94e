"""Wires the paperless documents into the app: runtime, routes, socket events."""

from __future__ import annotations

from aiohttp import web

from server.core import keys
from server.core.realtime import Realtime
from server.documents import routes as api_documents
from server.documents import sockets as events_documents
from server.documents import upload as api_document_upload
from server.documents.runtime import create_runtime, documents_context


def setup(app: web.Application, realtime: Realtime) -> None:
    """Call after the database's cleanup context is registered (it runs first)."""
    app[keys.DOCUMENTS] = create_runtime(app)
    app.cleanup_ctx.append(documents_context)
    events_documents.register(realtime)
    app.add_routes(api_document_upload.routes)
    app.add_routes(api_documents.routes)
