"""The app keys the procedure feature provides (server/procedure/feature.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from server.procedure.live import ProcedureLive

LIVE: web.AppKey[ProcedureLive] = web.AppKey("live")
