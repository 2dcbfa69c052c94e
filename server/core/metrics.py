"""Prometheus metrics, in a registry owned by the app (no global registry)."""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from rooms.models import Role
from server.core import keys
from server.core.auth import USER
from server.core.middleware import error_response

log = logging.getLogger(__name__)


@dataclass
class Metrics:
    http_requests: Counter
    http_seconds: Histogram
    socket_clients: Gauge
    socket_events: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> Metrics:
        return cls(
            http_requests=Counter("hopso_http_requests_total", "HTTP requests",
                                  ["method", "route", "status"], registry=registry),
            http_seconds=Histogram("hopso_http_request_seconds", "HTTP request time",
                                   ["route"], registry=registry),
            socket_clients=Gauge("hopso_socket_clients", "Connected socket.io clients",
                                 registry=registry),
            socket_events=Counter("hopso_socket_events_total", "socket.io events handled",
                                  ["event", "outcome"], registry=registry),
        )


def _has_token(request: web.Request) -> bool:
    token = request.app[keys.SETTINGS].metrics_token
    scheme, _, offered = request.headers.get("Authorization", "").partition(" ")
    return bool(token) and scheme.lower() == "bearer" and hmac.compare_digest(
        offered.strip().encode("utf-8", "surrogateescape"), str(token).encode())


def _refused() -> web.Response:
    refused = error_response(401, "not_authenticated",
                             "send the metrics token as a bearer token, or log in as an "
                             "administrator")
    refused.headers["WWW-Authenticate"] = 'Bearer realm="hopso-metrics"'
    return refused


def _prometheus(app: web.Application) -> web.Response:
    body = generate_latest(app[keys.REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def metrics_handler(request: web.Request) -> web.Response:
    """Prometheus text, for a scraper with the bearer token (--metrics-token) or a logged-in
    administrator; the counters describe who uses the server and when, so nobody else."""
    if _has_token(request):
        pass
    elif request.headers.get("Authorization", "").partition(" ")[2] or request.get(USER) is None:
        return _refused()
    elif request[USER].role != Role.admin:
        return error_response(403, "forbidden", "administrators only")
    return _prometheus(request.app)


def metrics_site(app: web.Application) -> Callable[[web.Application], AsyncIterator[None]]:
    """With --metrics-addr: /metrics on a separate aiohttp site at that address (an operator's
    network, a local Prometheus), for anyone who reaches it there, or only with the bearer
    token when --metrics-token is set too; the main site then has no /metrics at all."""
    settings = app[keys.SETTINGS]
    assert settings.metrics_addr is not None
    host, port = settings.metrics_addr

    async def handler(request: web.Request) -> web.Response:
        if settings.metrics_token and not _has_token(request):
            return _refused()
        return _prometheus(app)

    async def lifespan(_app: web.Application) -> AsyncIterator[None]:
        side = web.Application()
        side[keys.SETTINGS] = settings
        side.router.add_get("/metrics", handler)
        runner = web.AppRunner(side, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            await runner.cleanup()
            raise OSError(f"--metrics-addr {host}:{port}: {exc.strerror or exc}") from exc
        log.info("metrics served on http://%s:%d/metrics", host, port)
        yield
        await runner.cleanup()
    return lifespan
