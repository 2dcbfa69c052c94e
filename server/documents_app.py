"""Wires the paperless documents into the app: runtime, routes, socket events."""

from __future__ import annotations

from aiohttp import web

from server import api_document_upload, api_documents, events_documents, keys
from server.doc_runtime import create_runtime, documents_context
from server.realtime import Realtime


def setup(app: web.Application, realtime: Realtime) -> None:
    """Call after the database's cleanup context is registered (it runs first)."""
    app[keys.DOCUMENTS] = create_runtime(app)
    app.cleanup_ctx.append(documents_context)
    events_documents.register(realtime)
    app.add_routes(api_document_upload.routes)
    app.add_routes(api_documents.routes)
