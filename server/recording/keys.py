"""The app keys the recording feature provides (server/recording/feature.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from server.recording.live import Recordings
    from server.recording.timeline import Timeline

RECORDINGS: web.AppKey[Recordings] = web.AppKey("recordings")
TIMELINE: web.AppKey[Timeline] = web.AppKey("timeline")
