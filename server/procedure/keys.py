"""The app keys the procedure feature provides (server/procedure/feature.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from server.procedure.lifecycle import VoteTimers
    from server.procedure.live import ProcedureLive

LIVE: web.AppKey[ProcedureLive] = web.AppKey("live")
VOTE_TIMERS: web.AppKey[VoteTimers] = web.AppKey("vote_timers")  # the feature's own
