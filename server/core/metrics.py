"""Prometheus metrics, in a registry owned by the app (no global registry)."""

from __future__ import annotations

import hmac
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


async def metrics_handler(request: web.Request) -> web.Response:
    """Prometheus text, for a scraper with the bearer token (--metrics-token) or a logged-in
    administrator; the counters describe who uses the server and when, so nobody else."""
    token = request.app[keys.SETTINGS].metrics_token
    scheme, _, offered = request.headers.get("Authorization", "").partition(" ")
    if token and scheme.lower() == "bearer" and hmac.compare_digest(
            offered.strip().encode("utf-8", "surrogateescape"), token.encode()):
        pass
    elif offered or request.get(USER) is None:
        refused = error_response(401, "not_authenticated",
                                 "send the metrics token as a bearer token, or log in as an "
                                 "administrator")
        refused.headers["WWW-Authenticate"] = 'Bearer realm="hopso-metrics"'
        return refused
    elif request[USER].role != Role.admin:
        return error_response(403, "forbidden", "administrators only")
    body = generate_latest(request.app[keys.REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
