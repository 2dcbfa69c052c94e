"""The app keys the chat feature provides (server/chat/feature.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from server.chat.live import ChatLimits

LIMITS: web.AppKey[ChatLimits] = web.AppKey("limits")
