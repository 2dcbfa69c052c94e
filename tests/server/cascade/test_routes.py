"""Admin view of the cascade (issue 4, item 5): GET /api/admin/nodes, rotating and revoking
a child node's credential, kept in the database across restarts; the /admin/nodes page."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import socketio
from sqlmodel import select

from rooms.models import NodeCredential
from server.cascade.credentials import load_credentials
from server.cascade.keys import NODE as NODE_KEY
from server.cascade.link import NodeCascade
from server.cascade.schemas import NAMESPACE
from server.cascade.tokens import make_token
from server.conference.keys import MEDIA
from server.core import keys
from server.core.settings import NodeSettings
from tests.conftest import Client, Harness, start_harness

CITY_SECRET = "c" * 16
NODE = NodeSettings("province", children={"city": CITY_SECRET})
CREDENTIAL = "/api/admin/nodes/children/{}/credential"


async def start_node(tmp_path: Path, database_url: str | None,
                     node: NodeSettings = NODE) -> Harness:
    return await start_harness(tmp_path, database_url, node=node)


async def stop(harness: Harness) -> None:
    await harness.close()
    await harness.server.close()


@pytest.fixture
async def node_sqlite(tmp_path: Path) -> AsyncIterator[Harness]:
    """A province node accepting the child "city" (secret "c" * 16), on SQLite."""
    harness = await start_node(tmp_path, None)
    yield harness
    await stop(harness)


def credentials(harness: Harness) -> dict[str, str]:
    return dict(harness.server.app[NODE_KEY].credentials)


async def stored(harness: Harness) -> list[tuple[str, str | None, bool]]:
    async with harness.server.app[keys.DB].session() as s:
        rows = (await s.exec(select(NodeCredential).order_by(NodeCredential.unit))).all()
        return [(r.unit, r.secret, r.revoked) for r in rows]


async def link_child(harness: Harness, unit: str, secret: str) -> socketio.AsyncClient:
    """A child node's signaling link (what ParentLink does), without media."""
    child = socketio.AsyncClient(reconnection=False)
    await child.connect(harness.base, namespaces=[NAMESPACE], transports=["websocket"],
                        auth={"unit": unit, "token": make_token(unit, secret)}, wait_timeout=5)
    return child


async def wait_for(check: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.02)


class Recorder:
    """Every response body an admin sees, to check that no secret is ever among them."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.seen: list[str] = []

    async def call(self, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        status, answer = await self.client.call(method, path, body, **kw)
        self.seen.append(answer if isinstance(answer, str) else json.dumps(answer))
        return status, answer


async def test_admin_sees_the_links_and_rotation_drops_the_live_one(
        node_sqlite: Harness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)  # run.py's level (database drivers log parameters at DEBUG)
    caplog.set_level(logging.DEBUG, logger="server")
    h = node_sqlite
    admin = Recorder(await h.login("quantri"))
    status, view = await admin.call("GET", "/api/admin/nodes")
    assert status == 200, view
    assert view == {"configured": True, "unit": "province", "path": ["province"],
                    "parent": None, "children": [{"unit": "city", "state": "disconnected"}],
                    "refusals": [], "revoked": []}

    child = await link_child(h, "city", CITY_SECRET)
    lost = asyncio.Event()
    child.on("disconnect", lost.set, namespace=NAMESPACE)
    _, view = await admin.call("GET", "/api/admin/nodes")
    [city] = view["children"]
    assert city["unit"] == "city" and city["state"] == "connected"
    assert {"rtt_ms", "meetings", "imported", "exported", "bitrate_in_bps",
            "bitrate_out_bps"} <= set(city)

    new_secret = "n3w-secret-for-the-city"
    status, body = await admin.call("POST", CREDENTIAL.format("city"), {"secret": new_secret})
    assert status == 200 and body == {"unit": "city", "credential": "rotated"}
    async with asyncio.timeout(5):
        await lost.wait()  # the live link was dropped ...
    await child.disconnect()
    with pytest.raises(socketio.exceptions.ConnectionError):
        await link_child(h, "city", CITY_SECRET)  # ... the old secret is refused ...
    child = await link_child(h, "city", new_secret)  # ... and the new one accepted
    _, view = await admin.call("GET", "/api/admin/nodes")
    assert view["children"][0]["state"] == "connected"
    assert any("wrong credential" in r for r in view["refusals"])

    lost = asyncio.Event()
    child.on("disconnect", lost.set, namespace=NAMESPACE)
    status, body = await admin.call("DELETE", CREDENTIAL.format("city"))
    assert status == 200 and body == {"unit": "city", "credential": "revoked"}
    async with asyncio.timeout(5):
        await lost.wait()
    await child.disconnect()
    with pytest.raises(socketio.exceptions.ConnectionError):
        await link_child(h, "city", new_secret)
    _, view = await admin.call("GET", "/api/admin/nodes")
    assert view["children"] == [] and view["revoked"] == ["city"]
    status, page = await admin.call("GET", "/admin/nodes", headers={"Accept": "text/html"})
    assert status == 200 and "Máy chủ nối tầng" in page and "province" in page
    # The parent's table and the child template show the same traffic fields; the child's
    # rotate form and the add form each take a secret (one generated by the page's script).
    for field in ("bitrate_in_bps", "bitrate_out_bps", "imported", "exported",
                  "media_transports"):
        assert page.count(f'data-field="{field}"') == 2, field
    assert page.count('name="secret"') == 2 and page.count('data-action="generate"') == 2
    assert page.count('data-action="revoke"') == 1 and 'id="add-child-form"' in page

    for secret in (CITY_SECRET, new_secret):
        assert not any(secret in seen for seen in admin.seen)
        assert secret not in caplog.text


async def test_only_administrators_may_see_or_change_the_nodes(node_sqlite: Harness) -> None:
    h = node_sqlite
    for username in ("thuky", "daibieu", "chutri", "kythuat"):
        client = await h.login(username)
        for method, path, body in (("GET", "/api/admin/nodes", None),
                                   ("POST", CREDENTIAL.format("city"), {"secret": "x" * 20}),
                                   ("DELETE", CREDENTIAL.format("city"), None)):
            status, answer = await client.call(method, path, body)
            assert status == 403 and set(answer) == {"error"}, (username, path, status, answer)
        status, _ = await client.call("GET", "/admin/nodes", headers={"Accept": "text/html"})
        assert status == 403, (username, status)
    anonymous = h.anonymous()
    status, _ = await anonymous.call("GET", "/api/admin/nodes")
    assert status == 401
    admin = await h.login("quantri")
    status, _ = await admin.call("DELETE", CREDENTIAL.format("city"),
                                 headers={"X-CSRF-Token": "forged"})
    assert status == 403  # CSRF
    assert credentials(h) == {"city": CITY_SECRET} and await stored(h) == []


async def test_a_server_that_is_not_a_node_says_so(hopso_sqlite: Harness) -> None:
    admin = await hopso_sqlite.login("quantri")
    status, view = await admin.call("GET", "/api/admin/nodes")
    assert status == 200 and view == {"configured": False}
    status, body = await admin.call("POST", CREDENTIAL.format("city"), {"secret": "x" * 20})
    assert status == 404 and body["error"]["code"] == "not_configured"
    status, page = await admin.call("GET", "/admin/nodes", headers={"Accept": "text/html"})
    assert status == 200
    assert "Máy chủ này không nối tầng (HOPSO_NODE_UNIT chưa đặt)" in page
    status, page = await admin.call("GET", "/admin/nodes?lang=en",
                                    headers={"Accept": "text/html"})
    assert "This server is not part of a cascade (HOPSO_NODE_UNIT is not set)" in page


async def test_bad_input_is_refused_and_changes_nothing(node_sqlite: Harness) -> None:
    h = node_sqlite
    admin = await h.login("quantri")
    city = CREDENTIAL.format("city")
    cases: list[tuple[str, str, Any, int, str]] = [
        ("POST", city, {"secret": "short-secret"}, 400, "secret"),
        ("POST", city, {"secret": "has spaces in the middle"}, 400, "secret"),
        ("POST", city, {"secret": "x" * 257}, 400, "secret"),
        ("POST", city, {"secret": 1234567890123456}, 400, "secret"),
        ("POST", city, {"secret": "x" * 20, "unit": "other"}, 400, "unit"),
        ("POST", city, {}, 400, "secret"),
        ("POST", CREDENTIAL.format("province"), {"secret": "x" * 20}, 400, "province"),
        ("POST", CREDENTIAL.format("bad%20unit"), {"secret": "x" * 20}, 400, "unit"),
        ("POST", CREDENTIAL.format("u" * 65), {"secret": "x" * 20}, 400, "unit"),
        ("DELETE", CREDENTIAL.format("ward"), None, 404, "ward"),
    ]
    for method, path, body, want, word in cases:
        status, answer = await admin.call(method, path, body)
        assert status == want, (path, body, status, answer)
        assert word in answer["error"]["message"], answer
    status, answer = await admin.call("POST", city, data=b"not json",
                                      headers={"Content-Type": "application/json"})
    assert status == 400 and answer["error"]["code"] == "bad_json"
    assert credentials(h) == {"city": CITY_SECRET} and await stored(h) == []


async def test_rotations_and_revocations_survive_a_restart(tmp_path: Path,
                                                           harness_database_url: str | None) -> None:
    node = NodeSettings("province", children={"city": CITY_SECRET, "ward:dong-phu": "w" * 16})
    first = await start_node(tmp_path, harness_database_url, node)
    try:
        admin = await first.login("quantri")
        rotated, added = "rotated-city-secret-1", "a-new-ward-secret-2"
        for path, body in ((CREDENTIAL.format("city"), {"secret": rotated}),
                           (CREDENTIAL.format("ward:nam-ly"), {"secret": added})):
            status, answer = await admin.call("POST", path, body)
            assert status == 200, answer
        status, _ = await admin.call("DELETE", CREDENTIAL.format("ward:dong-phu"))
        assert status == 200
        assert credentials(first) == {"city": rotated, "ward:nam-ly": added}
    finally:
        await stop(first)

    second = await start_node(tmp_path, harness_database_url, node)  # same env, same database
    try:
        assert credentials(second) == {"city": rotated, "ward:nam-ly": added}
        assert await stored(second) == [("city", rotated, False),
                                         ("ward:dong-phu", None, True),
                                         ("ward:nam-ly", added, False)]
        admin = await second.login("quantri")
        _, view = await admin.call("GET", "/api/admin/nodes")
        assert [c["unit"] for c in view["children"]] == ["city", "ward:nam-ly"]
        assert view["revoked"] == ["ward:dong-phu"]
        text = json.dumps(view)
        assert not any(s in text for s in (CITY_SECRET, "w" * 16, rotated, added))
        # A revoked child can be given a credential again.
        status, _ = await admin.call("POST", CREDENTIAL.format("ward:dong-phu"),
                                     {"secret": "w" * 20})
        assert status == 200
        _, view = await admin.call("GET", "/api/admin/nodes")
        assert view["revoked"] == [] and len(view["children"]) == 3
    finally:
        await stop(second)


async def test_a_change_made_through_another_process_applies_here(tmp_path: Path,
                                                                  harness_database_url: str | None) -> None:
    """Processes of one node share the database: a rotation and a revocation made through
    one reach another's live credentials at its next refresh (load_credentials, every
    CREDENTIALS_REFRESH_S). A second NodeCascade on the same database stands in for it."""
    node = NodeSettings("province", children={"city": CITY_SECRET, "ward:dong-phu": "w" * 16})
    harness = await start_node(tmp_path, harness_database_url, node)
    try:
        other = NodeCascade(node, harness.server.app[MEDIA].sfu)
        admin = await harness.login("quantri")
        assert (await admin.call("POST", CREDENTIAL.format("city"),
                                 {"secret": "rotated-elsewhere-1"}))[0] == 200
        assert (await admin.call("DELETE", CREDENTIAL.format("ward:dong-phu")))[0] == 200
        assert other.credentials == {"city": CITY_SECRET, "ward:dong-phu": "w" * 16}
        await load_credentials(harness.server.app[keys.DB], other)
        assert other.credentials == {"city": "rotated-elsewhere-1"}
    finally:
        await stop(harness)
