"""The app keys the conference feature provides (server/conference/feature.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from server.conference.hub import MediaHub

MEDIA: web.AppKey[MediaHub] = web.AppKey("hub")
