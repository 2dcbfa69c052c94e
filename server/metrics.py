"""Prometheus metrics, in a registry owned by the app (no global registry)."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import generate_latest

from server import keys


@dataclass
class Metrics:
    http_requests: Counter
    http_seconds: Histogram
    socket_clients: Gauge
    socket_events: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> "Metrics":
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
    body = generate_latest(request.app[keys.REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
