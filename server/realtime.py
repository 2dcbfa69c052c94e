"""socket.io: authenticated connections, one small handler per event, one schema per event.

Every handler acknowledges with {"ok": true, "result": ...} or
{"ok": false, "error": {"code": ..., "message": ...}}.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any, Awaitable, Callable, Generic, TypeVar

import socketio
from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError

from rooms.db import Database
from rooms.errors import DomainError, NotAuthenticated
from rooms.models import User
from server import keys
from server.auth import SESSION_CACHE, SESSION_COOKIE, SessionCache
from server.metrics import Metrics

log = logging.getLogger(__name__)
P = TypeVar("P", bound=BaseModel)
E = TypeVar("E", bound=Exception)


class EventSchema(BaseModel):
    """Base for event payloads: unknown fields and wrong types are errors, not ignored."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


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


def meeting_room(meeting_id: int) -> str:
    return f"meeting:{meeting_id}"


def user_room(user_id: int) -> str:
    return f"user:{user_id}"


def error_ack(code: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error": {"code": code, "message": message}}


class Realtime:
    """Owns the socket.io server's handlers for one app."""

    def __init__(self, app: web.Application, sio: socketio.AsyncServer) -> None:
        self.app, self.sio = app, sio
        self.metrics: Metrics = app[keys.METRICS]
        self.handlers: dict[str, _Registered[Any]] = {}
        # Library errors a feature turns into DomainErrors once, here, not in every handler.
        self._error_maps: list[tuple[type[Exception], Callable[[Any], DomainError]]] = []
        self.disconnect_hooks: list[Callable[[str], Awaitable[None]]] = []
        # Every event re-checks its session, from this cache (TTL and invalidation: see
        # SessionCache) rather than two database reads per pen stroke.
        self.sessions = app[SESSION_CACHE] = SessionCache()
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
            raise socketio.exceptions.ConnectionRefusedError("not_authenticated")
        user, _ = found
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
        registered = self.handlers[event]
        outcome = "ok"
        try:
            session = await self.sio.get_session(sid)
            found = await self.sessions.load(self.app[keys.DB], session.get("token"))
            if found is None:  # expired, logged out or disabled since connecting
                self.sio.start_background_task(self._drop, sid)  # after this ack is sent
                raise NotAuthenticated("session ended; log in again")
            # Validated as the JSON it arrived as: strict types, enums by value.
            payload = registered.schema.model_validate_json(json.dumps(
                data if data is not None else {}))
            result = await registered.handler(EventContext(sid, found[0], self.app), payload)
            return {"ok": True, "result": result}
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


def create_sio(redis_url: str | None) -> socketio.AsyncServer:
    manager = socketio.AsyncRedisManager(redis_url) if redis_url else None
    # cors_allowed_origins=None keeps python-socketio's same-origin check (no cross-site sockets).
    return socketio.AsyncServer(async_mode="aiohttp", client_manager=manager,
                                max_http_buffer_size=1_000_000, ping_timeout=20)
