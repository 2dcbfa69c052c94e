"""The app keys the documents feature provides (server/documents/feature.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from server.documents.runtime import DocumentRuntime

DOCUMENTS: web.AppKey[DocumentRuntime] = web.AppKey("runtime")
