"""The app factory: everything the server holds hangs off one aiohttp Application."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp_jinja2
import jinja2
from aiohttp import web
from prometheus_client import CollectorRegistry

from rooms.db import Database
from server.admin import feature as admin
from server.archive import feature as archive
from server.cascade import feature as cascade
from server.chat import feature as chat
from server.chat.events import ChatPosted
from server.conference import feature as conference
from server.core import health, heap, keys, pages
from server.core import session_routes as api_session
from server.core.auth import auth_middleware
from server.core.bus import Bus
from server.core.bus_bridge import BusBridge
from server.core.feature import install
from server.core.i18n import Translator, catalog_handler, language_middleware
from server.core.login_limit import LoginLimiter, LoginPolicy, MemoryStore, RedisStore, Store
from server.core.metrics import Metrics, metrics_handler, metrics_site
from server.core.middleware import (
    error_middleware,
    headers_middleware,
    metrics_middleware,
    quiet_client_protocol_errors,
)
from server.core.migrate import upgrade
from server.core.passwords import Passwords, password_hasher
from server.core.realtime import Realtime
from server.core.settings import Settings
from server.core.socket_guard import create_sio
from server.core.trusted_proxy import trusted_proxy_middleware
from server.documents import feature as documents
from server.documents.events import PresenterMoved
from server.meetings import feature as meetings
from server.meetings.events import MeetingClosed
from server.procedure import feature as procedure
from server.procedure.events import AgendaChanged, FloorChanged, VoteUpdated
from server.recording import feature as recording

log = logging.getLogger(__name__)
WEB_CLIENT = Path(__file__).resolve().parent.parent / "web_client"
# Browser libraries installed from npm at set-up time (web_client/package-lock.json).
VENDOR = {"socket.io": WEB_CLIENT / "node_modules" / "socket.io-client" / "dist",
          "pdfjs": WEB_CLIENT / "node_modules" / "pdfjs-dist"}
SERVICE_WORKER = WEB_CLIENT / "static" / "sw.js"
# Bus events every process must see (over Redis, when configured: server/core/bus_bridge.py):
# a meeting closed, or its floor given, through one process reaches the conference room in
# whichever process holds the meeting's media; what the timeline notes reaches the process
# recording the meeting. Only handlers subscribed with `relayed=True` hear them there.
CROSS_PROCESS_EVENTS: tuple[type, ...] = (MeetingClosed, FloorChanged, AgendaChanged,
                                          VoteUpdated, PresenterMoved, ChatPosted)


def create_app(settings: Settings) -> web.Application:
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[trusted_proxy_middleware(settings.trusted_proxies), headers_middleware,
                     metrics_middleware, error_middleware, language_middleware,
                     auth_middleware])
    app[keys.SETTINGS] = settings
    app[keys.BUS] = Bus()
    quiet_client_protocol_errors()  # a client's malformed HTTP: one INFO line, no traceback
    app[keys.REGISTRY] = registry = CollectorRegistry()
    app[keys.METRICS] = Metrics.create(registry)
    app[keys.PASSWORDS] = Passwords(password_hasher(settings.fast_hash))
    if settings.fast_hash:
        log.warning("--fast-hash: new passwords get argon2id's cheapest profile (tests only)")
    store: Store = (RedisStore(settings.redis_url, settings.login_redis_prefix)
                    if settings.redis_url else MemoryStore())
    app[keys.LIMITER] = LoginLimiter(LoginPolicy(
        user_failures=settings.login_attempts_per_5min,
        ip_failures=settings.login_ip_failures_per_5min), store)
    app[keys.TRANSLATOR] = Translator()
    app[keys.DB] = Database(settings.sqlalchemy_url)
    # Lifespans (cleanup_ctx) open in this order and close in reverse: the login store
    # last, the database after every feature, the heap settled once all have started.
    app.cleanup_ctx.append(_login)
    app.cleanup_ctx.append(_database)
    app[keys.HEALTH] = health.Health()  # core's checks here, the features add theirs
    health.install_core_checks(app)

    sio = create_sio(settings.redis_url, settings.socket_limits)
    sio.attach(app)
    app[keys.SIO] = sio
    realtime = Realtime(app, sio)
    app.cleanup_ctx.append(heap.FullCollections(activity=lambda: realtime.events_seen).run)
    install(app, realtime, [meetings.FEATURE, procedure.FEATURE, documents.FEATURE,
                            conference.FEATURE, cascade.FEATURE, recording.FEATURE, archive.FEATURE,
                            admin.FEATURE, chat.FEATURE])
    if settings.redis_url:  # after the features: it closes before them
        bridge = BusBridge(app[keys.BUS], settings.redis_url, settings.bus_redis_channel,
                           CROSS_PROCESS_EVENTS)
        app.cleanup_ctx.append(lambda _app: bridge.run())
    app.cleanup_ctx.append(_settled_heap)

    env = aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(WEB_CLIENT / "templates"),
                               autoescape=jinja2.select_autoescape(["html"]),
                               context_processors=[pages.template_context])
    # The deploy's browser files, named: sw.js caches them under it (documents.html passes it).
    env.globals["static_build"] = static_build_id()
    zone = ZoneInfo(settings.timezone)
    env.filters["localtime"] = lambda moment: moment.astimezone(zone).strftime("%d/%m/%Y %H:%M")
    app.add_routes(api_session.routes)
    app.add_routes(pages.routes)
    health.add_routes(app)
    if settings.metrics_addr is None:
        app.router.add_get("/metrics", metrics_handler)
    else:  # its own listener, opened after the features and closed before them
        app.cleanup_ctx.append(metrics_site(app))
    app.router.add_get("/i18n/{lang}.json", catalog_handler)
    app.router.add_get("/sw.js", service_worker)
    app.router.add_static("/static", WEB_CLIENT / "static")
    for name, path in VENDOR.items():
        if path.is_dir():
            app.router.add_static(f"/vendor/{name}", path)
        else:
            log.warning("browser library %s missing at %s: run the setup command", name, path)
    return app


def static_build_id() -> str:
    """A short hash naming this deploy's browser files: what /static serves (contents) and the
    versions of the /vendor libraries. Computed once at start-up; every process serving the
    same files computes the same id, and any change of a file gives a new one."""
    digest = hashlib.sha256()
    static = WEB_CLIENT / "static"
    for path in sorted(p for p in static.rglob("*") if p.is_file()):
        digest.update(path.relative_to(static).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    for name, path in sorted(VENDOR.items()):
        for package in (path / "package.json", path.parent / "package.json"):
            if package.is_file():
                digest.update(name.encode() + b"\0" + package.read_bytes())
                break
    return digest.hexdigest()[:16]


async def service_worker(_request: web.Request) -> web.FileResponse:
    """The documents page's service worker, at the root so that its scope is the whole site
    (docs/architecture.md (Documents)). Revalidated on every update check."""
    return web.FileResponse(SERVICE_WORKER, headers={
        "Content-Type": "text/javascript; charset=utf-8", "Cache-Control": "no-cache"})


async def _settled_heap(_app: web.Application) -> AsyncIterator[None]:
    """Last lifespan to open: move what start-up allocated out of the cyclic garbage
    collector's way.

    By the time the app starts, the process holds ~200k long-lived objects (modules,
    functions, SQLAlchemy and pydantic metadata, aiortc, ...). Every full ("generation 2")
    collection walks them all: ~130-160 ms on the 2-core benchmark machine, with the event
    loop stopped, which was the whole p99 of the stroke and page-turn fan-out. Frozen, they
    are never scanned again; full collections then only walk what the server allocated since
    (connections, caches, annotation logs). Frozen objects are still freed by reference
    counting; only cycles among them would be kept, and start-up leaves none behind (we
    collect first). Once per process: GC state is process-wide, and a test process creating
    many apps freezes only at the first.
    """
    heap.settle()  # and full collections left to heap.FullCollections, when quiet
    yield


async def _login(app: web.Application) -> AsyncIterator[None]:
    """Nothing to open; the password hasher's threads and the limiter's store close last."""
    yield
    app[keys.PASSWORDS].close()
    await app[keys.LIMITER].store.close()


async def _database(app: web.Application) -> AsyncIterator[None]:
    db = app[keys.DB]
    if db.is_sqlite:
        app[keys.SETTINGS].data_dir.mkdir(parents=True, exist_ok=True)
    await upgrade(db)
    yield
    await db.close()
