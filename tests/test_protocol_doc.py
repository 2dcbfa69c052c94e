"""docs/protocol.md names every REST route and socket.io event the server registers: a route
or an event added without its line in the doc fails here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from aiohttp import web

from server.app import create_app
from server.core import keys
from server.core.settings import NodeSettings, Settings

DOC = (Path(__file__).resolve().parents[1] / "docs" / "protocol.md").read_text(encoding="utf-8")
PLACEHOLDER = re.compile(r"\{[^}]*\}")  # `{id}`, `{meeting_id}`, `{vi\|en}`: any name
LIBRARY_EVENTS = {"connect", "disconnect", "*"}  # socket.io's own, not the protocol's


def normalized(text: str) -> str:
    # The procedure's routes are written "`GET …/agenda`" under "All under /api/meetings/{id}".
    return PLACEHOLDER.sub("{}", text).replace("`GET …/", "`GET /api/meetings/{}/") \
        .replace("`POST …/", "`POST /api/meetings/{}/").replace("`PUT …/", "`PUT /api/meetings/{}/") \
        .replace("`PATCH …/", "`PATCH /api/meetings/{}/") \
        .replace("`DELETE …/", "`DELETE /api/meetings/{}/")


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> web.Application:
    # A cascade node, so that the /node namespace is registered too; never started.
    settings = Settings(data_dir=tmp_path_factory.mktemp("data"), fast_hash=True,
                        node=NodeSettings("province", children={"city": "c" * 16}))
    return create_app(settings)


def documented(method: str, path: str, doc: str) -> bool:
    """`METHOD path` in backticks, followed by the end of the code span or a query; pages
    and static files (GET outside /api) may be listed by path alone."""
    pattern = re.escape(path) + r"(?:`|\?)"
    if method == "GET" and not path.startswith("/api/"):
        return re.search(r"`(?:GET )?" + pattern, doc) is not None
    return re.search(r"`" + re.escape(method) + " " + pattern, doc) is not None


def test_every_rest_route_is_in_protocol_md(app: web.Application) -> None:
    doc = normalized(DOC)
    missing = []
    for route in app.router.routes():
        resource = route.resource
        if route.method == "HEAD" or resource is None:
            continue  # aiohttp answers HEAD for every GET
        path = PLACEHOLDER.sub("{}", resource.canonical)
        if path == "/socket.io/":
            continue  # the socket.io endpoint: its own test below
        if isinstance(resource, web.StaticResource):
            found = f"`{path}/…`" in doc
        else:
            found = documented(route.method, path, doc)
        if not found:
            missing.append(f"{route.method} {path}")
    assert not missing, f"routes missing from docs/protocol.md: {sorted(set(missing))}"


def test_every_socket_event_is_in_protocol_md(app: web.Application) -> None:
    assert "(path `/socket.io/`)" in DOC
    handlers = app[keys.SIO].handlers
    assert set(handlers) >= {"/", "/node"}
    missing = [f"{namespace} {event}" for namespace, events in handlers.items()
               for event in events
               if event not in LIBRARY_EVENTS and f"`{event}`" not in DOC]
    assert not missing, f"socket.io events missing from docs/protocol.md: {sorted(missing)}"
