"""Typed keys for what core sets up before any feature (server/app.py); each feature keeps
its own in server/<feature>/keys.py. No module-level state anywhere."""

from __future__ import annotations

from typing import TYPE_CHECKING

import socketio
from aiohttp import web
from prometheus_client import CollectorRegistry

from rooms.db import Database
from server.core.bus import Bus
from server.core.settings import Settings

if TYPE_CHECKING:
    from server.core.health import Health
    from server.core.i18n import Translator
    from server.core.login_limit import LoginLimiter
    from server.core.metrics import Metrics
    from server.core.passwords import Passwords

SETTINGS = web.AppKey("settings", Settings)
DB = web.AppKey("db", Database)
SIO = web.AppKey("sio", socketio.AsyncServer)
REGISTRY = web.AppKey("registry", CollectorRegistry)
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
LIMITER: web.AppKey[LoginLimiter] = web.AppKey("limiter")
PASSWORDS: web.AppKey[Passwords] = web.AppKey("passwords")
TRANSLATOR: web.AppKey[Translator] = web.AppKey("translator")
HEALTH: web.AppKey[Health] = web.AppKey("health")  # readiness checks (server/core/health.py)
BUS = web.AppKey("bus", Bus)  # set before any feature's setup (server/core/feature.py)
