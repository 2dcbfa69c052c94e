"""socket.io: authenticated connections, one small handler per event, one schema per event.

Every handler acknowledges with {"ok": true, "result": ...} or
{"ok": false, "error": {"code": ..., "message": ...}}.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any, Generic, TypeVar

import socketio
from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator
from sqlalchemy.exc import TimeoutError as PoolTimeout

from rooms.db import Database
from rooms.errors import DomainError, NotAuthenticated
from rooms.models import User
from server.core import keys
from server.core.auth import SESSION_CACHE, SESSION_COOKIE, SessionCache
from server.core.metrics import Metrics
from server.core.socket_guard import GuardedServer, error_ack, refused

log = logging.getLogger(__name__)
P = TypeVar("P", bound=BaseModel)
E = TypeVar("E", bound=Exception)
INT64 = 2**63 - 1  # what the database stores; a bigger id is refused, not an OverflowError
BUSY_LOG_EVERY_S = 10.0


class EventSchema(BaseModel):
    """Base for event payloads: unknown fields and wrong types are errors, not ignored, and
    no integer anywhere in them (nested dicts and lists included) exceeds 64 bits."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    @field_validator("*", mode="after")
    @classmethod
    def _integers_fit_storage(cls, value: Any) -> Any:
        stack = [value]
        while stack:
            item = stack.pop()
            if isinstance(item, int) and not -INT64 - 1 <= item <= INT64:
                raise ValueError("integer out of range (64 bits at most)")
            if isinstance(item, dict):
                stack.extend(item.values())
            elif isinstance(item, (list, tuple)):
                stack.extend(item)
        return value


@dataclass(frozen=True)
class EventContext:
    sid: str
    user: User
    app: web.Application

    @property
    def sio(self) -> socketio.AsyncServer:
        return self.app[keys.SIO]

    @property
    def db(self) -> Database:
        return self.app[keys.DB]


Handler = Callable[[EventContext, Any], Awaitable[Any]]


@dataclass(frozen=True)
class _Registered(Generic[P]):
    schema: type[P]
    handler: Callable[[EventContext, P], Awaitable[Any]]


REALTIME: web.AppKey[Realtime] = web.AppKey("realtime")


def meeting_room(meeting_id: int) -> str:
    return f"meeting:{meeting_id}"


def user_room(user_id: int) -> str:
    return f"user:{user_id}"


class Realtime:
    """Owns the socket.io server's handlers for one app."""

    def __init__(self, app: web.Application, sio: GuardedServer) -> None:
        self.app, self.sio = app, sio
        self.metrics: Metrics = app[keys.METRICS]
        self._busy_logged, self._busy_since_log = 0.0, 0
        sio.on_outcome = self._count_refused
        self.handlers: dict[str, _Registered[Any]] = {}
        # Library errors a feature turns into DomainErrors once, here, not in every handler.
        self._error_maps: list[tuple[type[Exception], Callable[[Any], DomainError]]] = []
        self.disconnect_hooks: list[Callable[[str], Awaitable[None]]] = []
        self.events_seen = 0
        # Every event re-checks its session, from this cache (TTL and invalidation: see
        # SessionCache) rather than two database reads per pen stroke.
        self.sessions = app[SESSION_CACHE] = SessionCache()
        app.cleanup_ctx.append(self.sessions.keep_fresh)  # refresh-ahead, off the events' path
        app[REALTIME] = self  # its registry: what the socket fuzz tests enumerate
        sio.on("connect", self._connect)
        sio.on("disconnect", self._disconnect)

    def on(self, event: str, schema: type[P]
           ) -> Callable[[Callable[[EventContext, P], Awaitable[Any]]],
                         Callable[[EventContext, P], Awaitable[Any]]]:
        def register(handler: Callable[[EventContext, P], Awaitable[Any]]
                     ) -> Callable[[EventContext, P], Awaitable[Any]]:
            self.handlers[event] = _Registered(schema, handler)

            async def dispatch(sid: str, data: Any = None) -> dict[str, Any]:
                return await self._dispatch(event, sid, data)

            self.sio.on(event, dispatch)
            return handler
        return register

    def on_disconnect(self, hook: Callable[[str], Awaitable[None]]) -> None:
        """Run `hook(sid)` when a connection ends (e.g. to close its media peer)."""
        self.disconnect_hooks.append(hook)

    def map_errors(self, kind: type[E], to: Callable[[E], DomainError]) -> None:
        """Handlers may let `kind` escape; it is acknowledged as `to(exc)`."""
        self._error_maps.append((kind, to))

    def _as_domain_error(self, exc: Exception) -> DomainError | None:
        if isinstance(exc, DomainError):
            return exc
        for kind, to in self._error_maps:
            if isinstance(exc, kind):
                return to(exc)
        return None

    async def _connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        request: web.Request | None = environ.get("aiohttp.request")
        cookie = SimpleCookie(environ.get("HTTP_COOKIE", ""))
        token = cookie[SESSION_COOKIE].value if SESSION_COOKIE in cookie else None
        if token is None and request is not None:
            token = request.cookies.get(SESSION_COOKIE)
        found = await self.sessions.load(self.app[keys.DB], token)
        if found is None:
            raise refused("not_authenticated", "no valid session; log in first")
        user, _ = found
        principal = f"user:{user.id}"  # one budget for all of a user's connections
        blocked = self.sio.blocked_for(principal)
        if blocked > 0:  # dropped for flooding a moment ago
            raise refused("rate_limited", f"dropped for flooding; retry in {math.ceil(blocked)} s")
        self.sio.bind(sid, principal)
        await self.sio.save_session(sid, {"token": token, "user_id": user.id})
        await self.sio.enter_room(sid, user_room(user.id))  # type: ignore[arg-type]
        self.metrics.socket_clients.inc()

    async def _disconnect(self, sid: str, *_: Any) -> None:
        self.metrics.socket_clients.dec()
        for hook in self.disconnect_hooks:
            try:
                await hook(sid)
            except Exception:
                log.exception("disconnect hook %r failed", hook)

    async def _drop(self, sid: str) -> None:
        await self.sio.sleep(0.2)
        await self.sio.disconnect(sid)

    async def _dispatch(self, event: str, sid: str, data: Any) -> dict[str, Any]:
        self.events_seen += 1  # activity, for heap.FullCollections' "quiet"
        registered = self.handlers[event]
        outcome = "ok"
        try:
            session = await self.sio.get_session(sid)
            found = await self.sessions.load(self.app[keys.DB], session.get("token"))
            if found is None:  # expired, logged out or disabled since connecting
                self.sio.start_background_task(self._drop, sid)  # after this ack is sent
                raise NotAuthenticated("session ended; log in again")
            # Validated as the JSON it arrived as: strict types, enums by value.
            try:
                text = json.dumps(data if data is not None else {}, allow_nan=False)
            except (TypeError, ValueError, RecursionError):
                outcome = "invalid"
                return error_ack("invalid", "payload: not a JSON object (binary data, NaN, "
                                            "or nested too deep)")
            payload = registered.schema.model_validate_json(text)
            result = await registered.handler(EventContext(sid, found[0], self.app), payload)
            return {"ok": True, "result": result}
        except PoolTimeout:
            outcome = "busy"
            self._log_busy(event)
            return error_ack("busy", "the server is busy; the event was not applied: retry")
        except ValidationError as exc:
            outcome = "invalid"
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "payload"
            return error_ack("invalid", f"{where}: {first['msg']}")
        except Exception as exc:
            domain = self._as_domain_error(exc)
            if domain is not None:
                outcome = domain.code
                return error_ack(domain.code, domain.message)
            outcome = "internal"
            log.exception("socket event %s failed", event)
            return error_ack("internal", "internal error; the event was not applied")
        finally:
            self.metrics.socket_events.labels(event, outcome).inc()

    def _count_refused(self, namespace: str, event: str | None, outcome: str) -> None:
        """The guard refused an event before dispatch (label: only names we registered)."""
        if namespace == "/":
            label = event if event in self.handlers else "(unknown)"
            self.metrics.socket_events.labels(label, outcome).inc()

    def _log_busy(self, event: str) -> None:
        """Database pool exhausted: one line per interval with a count, not a traceback
        per event (each one was answered `busy`)."""
        self._busy_since_log += 1
        now = time.monotonic()
        if now - self._busy_logged >= BUSY_LOG_EVERY_S:
            log.warning("database pool exhausted: %d socket event(s) answered busy "
                        "(latest: %s)", self._busy_since_log, event)
            self._busy_logged, self._busy_since_log = now, 0
