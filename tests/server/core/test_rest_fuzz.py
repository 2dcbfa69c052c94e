"""A Hypothesis fuzzer over every REST route the app's router holds (a new route is fuzzed
without touching this file): hostile path parameters, query strings, JSON and other bodies,
content types and charsets, CSRF headers, sent by an anonymous client and by a logged-in
user of each main role. Whatever arrives: status < 500, a 4xx on /api/ has the documented
shape {"error": {"code", "message"}}, and nothing is logged at ERROR or with a traceback.

Bounded: two sweeps, each a freshly drawn request per route sent as every principal (on
PostgreSQL as the first three), ~1,500 requests on SQLite and ~750 on PostgreSQL, 10-30 s
each on the 2-core CI machine; derandomized, so CI sends the same inputs every time.
HOPSO_FUZZ_SWEEPS=N runs N sweeps and HOPSO_FUZZ_RANDOM=1 draws fresh inputs (for local runs,
with --timeout raised: pytest's 120 s applies to the whole fuzz test).
Whatever it finds is kept as an explicit case in tests/server/core/test_http_util.py."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from yarl import URL

from rooms.users import find_user
from server.app import create_app
from server.core import keys
from server.core.passwords import password_hasher
from server.core.settings import Settings
from tests.conftest import Client, Harness, start_harness
from tests.server.documents_support import demo_meeting_id, make_pdf, upload_ready

SWEEPS = float(os.environ.get("HOPSO_FUZZ_SWEEPS", "2"))
RANDOM = os.environ.get("HOPSO_FUZZ_RANDOM") == "1"
# In this order: PostgreSQL's run (below) takes the first three.
ROLES = ["quantri", "chutri", "thuky", "daibieu", "kythuat", "anonymous"]

# --- what a hostile client sends -----------------------------------------------------------

HOSTILE_TEXT = [
    "¹", "²", "١٢", "１２", "0", "-1", "+1", " 1", "1 ", "1.0", "1e3", "0x10", "1_0",
    "00000000001", str(2**31 - 1), str(2**31), str(2**63 - 1), str(2**63), str(2**64),
    "9" * 40, "9" * 5000, "", "null", "true", "[]", "{}", "%", "%00", "\x00", "a\x00b", "..",
    "../../../../etc/passwd", "a" * 300, "\u202e", "😀", "latest", "ward:x" * 20, "\r\n",
    "<script>", "' OR 1=1 --", "\ufffd", "ａ", "e\u0301", "//evil.example", "/\t/evil",
    "javascript:1",
]
BIG_INTS = [2**31 - 1, 2**31, -(2**31) - 1, 2**63 - 1, 2**63, 2**64, 10**30, -(10**30)]
FIELDS = [
    "title", "role", "user_id", "site_id", "unit_id", "name", "kind", "parent_id", "move",
    "into_id", "username", "password", "full_name", "disabled", "secret", "nodes", "published",
    "agenda_item_id", "confidential", "planned_minutes", "presenter_user_id", "presenter_name",
    "position", "document_id", "quorum_rule", "seats", "text", "receipt", "description",
    "starts_at",
]
GOOD_VALUES: dict[str, list[Any]] = {
    "role": ["delegate", "chair", "secretary", "observer", "site_operator", "admin"],
    "kind": ["ward", "city", "province", "other"],
    "title": ["Tờ trình", " "], "name": ["Phường Mới"], "full_name": ["Nguyễn Văn A"],
    "username": ["chutri", "nguoimoi"], "password": ["a-long-password-1", "short"],
    "starts_at": ["2026-01-01T08:00:00+07:00", "2026-13-45T99:00", "9999-12-31T23:59:59"],
    "quorum_rule": ["majority", "two_thirds", "none"], "nodes": [["ward:x"], ["", "a" * 100]],
    "secret": ["s" * 16, "short"], "receipt": ["0" * 64], "text": ["Kết luận"],
    "move": [True], "published": [True, False], "disabled": [False],
}
SPECIAL_BODIES = [
    b"[" * 100_000 + b"]" * 100_000, b"[" * 33 + b"]" * 33, b'{"a":' * 50_000,
    b'{"user_id": ' + b"9" * 5000 + b', "role": "delegate"}', b'{"title": ' + b"9" * 5000 + b"}",
    b"\xef\xbb\xbf{}", b'{"title": "\xff\xfe"}', b'{"title": "\\ud800"}',
    b'{"title": "a\\u0000b", "name": "a\\u0000b", "kind": "ward"}', b"", b"null", b"[]", b'"x"',
    b"1e999", b'{"planned_minutes": 1e400, "title": "x"}', b"{", b'{"a": NaN}',
    b'{"role": "delegate", "user_id": -0.0}', b"a=%FF&csrf_token=%FE%FF",
    (b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.pdf"\r\n\r\n%PDF-1.4\r\n'
     b"--x--\r\n"),
    b"--x\r\nContent-Disposition: form-data\r\n\r\n1\r\n--x--\r\n",
    (b'--x\r\nContent-Disposition: form-data; name="title"\r\nContent-Type: text/plain; '
     b"charset=x-bogus\r\n\r\n\xff\r\n--x--\r\n"),
    b"--x\r\n\r\n", b"x" * ((1 << 20) + 10),
]
CONTENT_TYPES = [
    "application/json", "application/json", "application/json; charset=utf-8",
    "application/json; charset=x-bogus", "application/json; charset=utf-16",
    "application/json; charset=\"", "text/plain", "application/x-www-form-urlencoded",
    "application/x-www-form-urlencoded; charset=x-bogus", "multipart/form-data",
    "multipart/form-data; boundary=x", "multipart/form-data; boundary=", "multipart/mixed; boundary=x",
    "application/octet-stream", "", "*/*", "application/json; boundary=x",
]
QUERY_KEYS = ["width", "version", "after", "q", "flatten", "reset", "lang", "next", "v",
              "EIO", "transport", "sid"]

text = st.one_of(st.sampled_from(HOSTILE_TEXT), st.text(max_size=24))
scalar = st.one_of(
    st.none(), st.booleans(), st.integers(), st.sampled_from(BIG_INTS),
    st.integers(min_value=-(2**80), max_value=2**80), st.floats(), text)
json_value = st.recursive(scalar, lambda kids: st.one_of(
    st.lists(kids, max_size=4), st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8),
                                                kids, max_size=4)), max_leaves=10)


def field_value(name: str) -> st.SearchStrategy[Any]:
    good = GOOD_VALUES.get(name)
    options = [scalar, json_value] + ([st.sampled_from(good)] * 2 if good else [])
    return st.one_of(*options)


json_object = st.lists(st.sampled_from(FIELDS).flatmap(
    lambda name: st.tuples(st.just(name), field_value(name))), max_size=6).map(dict)


def encode_json(value: Any, ascii_only: bool) -> bytes:
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


body_bytes = st.one_of(
    st.builds(encode_json, json_object, st.booleans()),
    st.builds(encode_json, json_value, st.booleans()),
    st.sampled_from(SPECIAL_BODIES),
    st.binary(max_size=64),
    st.none(),
)


# --- the app's routes and the principals ---------------------------------------------------


@dataclass(frozen=True)
class Route:
    method: str
    template: str  # "/api/meetings/{meeting_id}"; a static directory: "/static/{filename}"

    @property
    def params(self) -> list[str]:
        return re.findall(r"\{(\w+)\}", self.template)


def app_routes(app: web.Application) -> list[Route]:
    """Every (method, path) the router serves, from the router itself."""
    found: set[Route] = set()
    for route in app.router.routes():
        resource = route.resource
        if resource is None:
            continue
        template = resource.canonical
        if isinstance(resource, web.StaticResource):
            template += "/{filename}"
        found.add(Route(route.method, template))
    return sorted(found, key=lambda r: (r.template, r.method))


@dataclass
class World:
    harness: Harness
    routes: list[Route]
    clients: dict[str, Client]
    known: dict[str, list[str]]
    roles: list[str]  # the principals each example is sent as
    hits: Counter[Route] = field(default_factory=Counter)
    seconds: Counter[Route] = field(default_factory=Counter)
    started: float = 0.0
    inputs: int = 0  # drawn requests, each sent as every principal
    requests: int = 0

    @property
    def max_params(self) -> int:
        return max(len(r.params) for r in self.routes)


async def logged_in(h: Harness, role: str) -> Client:
    """A fresh session for `role`, undoing what the fuzzer may have done to the account
    (disabled it, changed its password)."""
    if role == "anonymous":
        return h.anonymous()
    async with h.server.app[keys.DB].session() as s:
        user = await find_user(s, role)
        assert user is not None
        user.disabled = False
        user.password_hash = password_hasher(fast=True).hash(h.logins[role].password)
        s.add(user)
    return await h.login(role)


@pytest.fixture
async def world(tmp_path: Path, harness_database_url: str | None) -> AsyncIterator[World]:
    # The fuzzer logs in with junk, often: keep the login limiter out of its way.
    limits = {"login_attempts_per_5min", "login_ip_failures_per_5min"}
    overrides = {f.name: 10**6 for f in dataclasses.fields(Settings) if f.name in limits}
    h = await start_harness(tmp_path, harness_database_url, **overrides)
    try:
        meeting_id = await demo_meeting_id(h)
        doc = await upload_ready(h, meeting_id, make_pdf(tmp_path, pages=2))
        secretary = await h.login("thuky")
        _, item = await secretary.call("POST", f"/api/meetings/{meeting_id}/agenda",
                                       {"title": "Báo cáo"})
        _, members = await secretary.call("GET", f"/api/meetings/{meeting_id}/members")
        ids = [str(m["id"]) for m in members["members"]]
        known = {
            "meeting_id": [str(meeting_id)], "document_id": [str(doc["id"])],
            "page": ["0", "1"], "item_id": [str(item["id"])], "member_id": ids,
            "site_id": [str(m["site_id"]) for m in members["members"] if m["site_id"]] or ["1"],
            "unit_id": ["1", "2"], "user_id": [str(m["user_id"]) for m in members["members"]
                                               if m["user_id"]],
            "vote_id": ["1"], "version": ["latest", "1"], "lang": ["vi", "en"],
            "unit": ["ward:x"], "filename": ["js/documents.js", "css/app.css", "../app.py"],
        }
        # SQLite: every principal. PostgreSQL (the suite runs both): the first three, to stay
        # within the time budget; what differs there is the database's answer to
        # out-of-range values, not the routing.
        roles = ROLES if harness_database_url is None else ROLES[:3]
        clients = {role: await logged_in(h, role) for role in roles}
        world = World(h, app_routes(h.server.app), clients, known, roles)
        yield world
        if world.inputs >= EXAMPLES:  # ran to the end (not stopped by a failure)
            seconds = time.monotonic() - world.started
            print(f"\nREST fuzz: {world.requests} requests ({world.inputs} inputs × "
                  f"{len(roles)} principals) over {len(world.routes)} routes in {seconds:.1f} s "
                  f"({sum(world.seconds.values()):.1f} s waiting for answers); slowest: "
                  + ", ".join(f"{r.method} {r.template} {t:.1f} s"
                              for r, t in world.seconds.most_common(4)))
            wanted = int(SWEEPS) * len(roles)
            thin = [(r.method, r.template, world.hits[r]) for r in world.routes
                    if world.hits[r] < wanted]
            assert not thin, f"routes the fuzzer hardly reached: {thin}"
    finally:
        await h.close()
        await h.server.close()


# A path parameter: most often a value that exists (the world's, for that parameter's name:
# an index into its list, so that the draws are the same for every route), else hostile.
KNOWN = 0
path_value = st.one_of(st.tuples(st.just(KNOWN), st.integers(0, 7)),
                       st.tuples(st.just(KNOWN), st.integers(0, 7)),
                       st.tuples(st.just(1), text | st.integers(-(2**70), 2**70).map(str)))


def path_param(world: World, name: str, drawn: tuple[int, Any]) -> str:
    kind, value = drawn
    known = world.known.get(name, ["1"])
    return known[value % len(known)] if kind == KNOWN else str(value)


OURS = ("server", "rooms", "documents", "media", "aiohttp")


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Records with a traceback (from anyone), and ERROR lines from our code or aiohttp's
    (engine.io logs a junk handshake once at ERROR, without a traceback, then at INFO)."""
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records
            if r.exc_info or (r.levelno >= logging.ERROR and r.name.startswith(OURS))]


OWN_TOKEN = "<own csrf token>"


async def send(world: World, data: st.DataObject, caplog: pytest.LogCaptureFixture) -> None:
    """One drawn request, sent as each principal in turn. Routes are taken in turn, not
    drawn, so that one sweep reaches every route; and so that Hypothesis sees the same
    draws whatever the route (it checks), everything is drawn every time and each route
    uses what it needs."""
    drawn = [data.draw(path_value, label=f"param {i}") for i in range(world.max_params)]
    query = data.draw(st.lists(st.tuples(st.sampled_from(QUERY_KEYS) | st.text(max_size=6),
                                         text | st.integers().map(str)), max_size=3), label="query")
    accept = data.draw(st.sampled_from(["application/json", "text/html", "*/*"]), label="accept")
    csrf = data.draw(st.sampled_from([OWN_TOKEN] * 4 + ["", "é", "x" * 200]), label="csrf")
    body = data.draw(body_bytes, label="body")
    content_type = data.draw(st.sampled_from(CONTENT_TYPES), label="content-type")
    # Counted once everything is drawn: Hypothesis abandons some draws half-way (overruns).
    route = world.routes[world.inputs % len(world.routes)]
    world.inputs += 1
    path = route.template
    for name, slot in zip(route.params, drawn):
        value = path_param(world, name, slot)
        safe = "/" if name == "filename" else ""
        path = path.replace("{" + name + "}", quote(value, safe=safe, errors="surrogatepass"))
    if query:
        path += "?" + "&".join(f"{quote(k)}={quote(v, errors='surrogatepass')}" for k, v in query)
    headers = {"Accept": accept}
    if route.method in ("POST", "PUT", "PATCH", "DELETE"):
        headers["Content-Type"] = content_type
    else:
        body = None
    for role in world.roles:
        caplog.clear()
        await send_as(world, role, route, path, headers, csrf, body)
        logged = tracebacks(caplog)
        assert not logged, f"{logged} after {role} {route.method} {path[:300]!r} {headers}"


async def send_as(world: World, role: str, route: Route, path: str, headers: dict[str, str],
                  csrf: str, body: bytes | None) -> None:
    client = world.clients[role]
    headers = dict(headers)
    if csrf:
        headers["X-CSRF-Token"] = client.csrf if csrf == OWN_TOKEN else csrf
    world.hits[route] += 1
    world.requests += 1
    where = f"{role} {route.method} {path[:300]!r} {headers} body={body[:200] if body else body!r}"
    # A request line over aiohttp's limit (8190 bytes) is refused by its HTTP parser, before
    # any handler or middleware, with a plain-text 400: not ours to shape. (With a body
    # still being sent, aiohttp's client may not even read that answer.)
    too_long = len(path) > 8000
    sent = time.monotonic()
    try:
        async with client.session.request(route.method, URL(client.base + path, encoded=True),
                                          data=body, headers=headers, allow_redirects=False,
                                          skip_auto_headers=["Content-Type"]) as r:
            status, payload = r.status, await r.read()
            answered_type = r.content_type
    except aiohttp.ClientError:
        if not too_long:
            raise
        return
    finally:
        world.seconds[route] += time.monotonic() - sent
    assert status < 500, f"{status} for {where}: {payload[:300]!r}"
    parser_refused = status == 400 and too_long
    if 400 <= status < 500 and route.template.startswith("/api/") and route.method != "HEAD" \
            and not parser_refused:
        assert answered_type == "application/json", f"{status} {answered_type} for {where}"
        answer = json.loads(payload)
        error = answer.get("error") if isinstance(answer, dict) else None
        assert isinstance(error, dict) and isinstance(error.get("code"), str) \
            and isinstance(error.get("message"), str), f"{status} {answer} for {where}"
    if role != "anonymous" and (status == 401 or route.template in ("/logout", "/api/login")
                                or route.template.startswith("/api/users")):
        world.clients[role] = await logged_in(world.harness, role)


def _route_count() -> int:
    """How many (method, path) the app serves: sizes the run (an app is built, not started)."""
    with tempfile.TemporaryDirectory() as tmp:
        return len(app_routes(create_app(Settings(data_dir=Path(tmp)))))


EXAMPLES = math.ceil(SWEEPS * _route_count())


# No shrinking: the server's state moves on between examples, so a shrunk example would not
# replay the failure; the assertion message names the whole request instead.
@settings(max_examples=EXAMPLES, deadline=None, derandomize=not RANDOM, database=None,
          phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
@given(data=st.data())
async def test_every_route_survives_hostile_input(world: World, data: st.DataObject,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    if not world.started:
        world.started = time.monotonic()
    await send(world, data, caplog)


def test_the_fuzzer_takes_its_routes_from_the_router(tmp_path: Path) -> None:
    """A new route is fuzzed without anyone editing the fuzzer: the list is the router's."""
    routes = app_routes(create_app(Settings(data_dir=tmp_path / "data")))
    templates = {r.template for r in routes}
    assert {"/api/meetings/{meeting_id}", "/api/documents/{document_id}/pages/{page}",
            "/api/units", "/login", "/socket.io/", "/static/{filename}"} <= templates
    assert len(routes) >= 100
