"""The app keys the archive feature provides (server/archive/feature.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from server.archive.retention import Retention
    from server.archive.service import Archives

ARCHIVES: web.AppKey[Archives] = web.AppKey("archives")
RETENTION: web.AppKey[Retention] = web.AppKey("retention")
