"""Presenter follow across two real server processes on PostgreSQL + Redis: a presenter on
process A and a late tablet on process B agree on the page (and, about a second later, on
the scroll position), the laser pointer crosses over, and a second presenter on B is refused
while A presents."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio

from testkit.processes import start_server
from tests.conftest import REDIS_PORT, need_service
from tests.documents import corpus
from tests.server.test_scale_out import login

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


class Tablet:
    """One logged-in user on one process: HTTP session + socket.io client."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.sio = socketio.AsyncClient(reconnection=False)
        self.csrf = ""
        self.events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    async def open(self, username: str, password: str) -> Tablet:
        self.csrf = await login(self.http, self.base, username, password)
        cookie = "; ".join(f"{c.key}={c.value}" for c in self.http.cookie_jar)
        for event in ("present:state", "present:pointer"):
            self.sio.on(event, lambda data, e=event: self.events.put_nowait((e, data)))
        await self.sio.connect(self.base, headers={"Cookie": cookie}, transports=["websocket"],
                               wait_timeout=10)
        return self

    async def call(self, event: str, payload: Any) -> Any:
        return await self.sio.call(event, payload, timeout=10)

    async def wait_for(self, event: str, match: Any = lambda _: True, timeout: float = 10
                       ) -> Any:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            name, data = await asyncio.wait_for(self.events.get(), max(remaining, 0.01))
            if name == event and match(data):
                return data

    async def close(self) -> None:
        if self.sio.connected:
            await self.sio.disconnect()
        await self.http.close()


async def _published_document(secretary: Tablet, meeting_id: int, pdf: bytes) -> int:
    form = aiohttp.FormData()
    form.add_field("file", pdf, filename="to-trinh.pdf", content_type="application/pdf")
    async with secretary.http.post(f"{secretary.base}/api/meetings/{meeting_id}/documents",
                                   data=form, headers={"X-CSRF-Token": secretary.csrf}) as r:
        body = await r.json()
        assert r.status == 202, body
    document_id = int(body["id"])
    for _ in range(600):
        async with secretary.http.get(f"{secretary.base}/api/documents/{document_id}") as r:
            doc = await r.json()
        if doc["progress"] is None:
            break
        await asyncio.sleep(0.1)
    assert doc["status"] in ("ready", "ready_with_warnings"), doc
    async with secretary.http.post(f"{secretary.base}/api/documents/{document_id}/publish",
                                   json={"published": True},
                                   headers={"X-CSRF-Token": secretary.csrf}) as r:
        assert r.status == 200, await r.text()
    return document_id


async def test_presenter_on_one_process_late_tablet_and_rival_on_another(
        tmp_path: Path, postgres_url: str) -> None:
    need_service("Redis", REDIS_PORT)
    env = {"HOPSO_DATABASE_URL": postgres_url,
           "HOPSO_REDIS_URL": f"redis://127.0.0.1:{REDIS_PORT}/0"}
    first = start_server("--demo", "--data-dir", str(tmp_path / "a"), env=env,
                         preimported=True)
    second = start_server("--data-dir", str(tmp_path / "b"), env=env,
                          preimported=True)
    tablets: list[Tablet] = []

    async def tablet(base: str, username: str) -> Tablet:
        t = Tablet(base)
        tablets.append(t)
        return await t.open(username, logins[username])

    try:
        logins = first.logins()
        secretary_a = await tablet(first.base, "thuky")
        async with secretary_a.http.get(first.base + "/api/meetings") as r:
            meeting_id = (await r.json())["meetings"][0]["id"]
        pdf = corpus.make_text_pdf(tmp_path, pages=4, name="to-trinh.pdf").read_bytes()
        document_id = await _published_document(secretary_a, meeting_id, pdf)

        chair = await tablet(first.base, "chutri")
        follower = await tablet(second.base, "daibieu")  # on B from the start
        for t in (chair, follower):
            ack = await t.call("meeting:join", {"meeting_id": meeting_id})
            assert ack["ok"], ack
        view = {"document_id": document_id, "page": 2, "zoom": 1.5, "scroll_x": 0.0,
                "scroll_y": 0.0}
        ack = await chair.call("present:update", view)
        assert ack["ok"], ack
        started = ack["result"]
        live = await follower.wait_for("present:state", lambda s: s["page"] == 2)
        assert live == started

        # A tablet joining late on B reads the same state from the database.
        late = await tablet(second.base, "daibieu2")
        ack = await late.call("meeting:join", {"meeting_id": meeting_id})
        assert ack["ok"], ack
        got = (await late.call("present:get", {"meeting_id": meeting_id}))["result"]
        assert (got["active"], got["document_id"], got["page"], got["seq"]) == (
            True, document_id, 2, started["seq"])

        # Scrolling on A: pushed at once through Redis, stored within about a second.
        for y in (0.2, 0.4, 0.6):
            ack = await chair.call("present:update", {**view, "scroll_y": y})
            assert ack["ok"], ack
        moved = ack["result"]
        assert moved["seq"] > started["seq"]
        live = await follower.wait_for("present:state", lambda s: s["scroll_y"] == 0.6)
        assert live["seq"] == moved["seq"]
        await asyncio.sleep(1.6)
        got = (await late.call("present:get", {"meeting_id": meeting_id}))["result"]
        assert (got["page"], got["scroll_y"], got["seq"]) == (2, 0.6, moved["seq"])

        # The laser pointer from A reaches B's tablets.
        ack = await chair.call("present:pointer", {"document_id": document_id, "page": 2,
                                                   "x": 100.0, "y": 150.0})
        assert ack["result"] == {"sent": True}
        pointer = await late.wait_for("present:pointer")
        assert (pointer["page"], pointer["x"], pointer["y"]) == (2, 100.0, 150.0)

        # A second presenter on B is refused while the chair presents on A.
        secretary_b = await tablet(second.base, "thuky")
        ack = await secretary_b.call("meeting:join", {"meeting_id": meeting_id})
        assert ack["ok"], ack
        ack = await secretary_b.call("present:update", {**view, "page": 0})
        assert not ack["ok"] and ack["error"]["code"] == "presenter_busy", ack
        ack = await secretary_b.call("present:pointer", {"document_id": document_id,
                                                         "page": 2, "x": 1.0, "y": 1.0})
        assert ack["error"]["code"] == "not_presenter", ack

        # The chair turns the page on A; B agrees; then stops, and B may present.
        ack = await chair.call("present:update", {**view, "page": 3})
        turned = ack["result"]
        assert turned["seq"] > moved["seq"]
        await follower.wait_for("present:state", lambda s: s["page"] == 3)
        got = (await late.call("present:get", {"meeting_id": meeting_id}))["result"]
        assert got == turned
        ack = await chair.call("present:stop", {"meeting_id": meeting_id})
        assert ack["ok"] and not ack["result"]["active"]
        ack = await secretary_b.call("present:update", {**view, "page": 1})
        assert ack["ok"], ack
        state = await chair.wait_for("present:state", lambda s: s["active"] and s["page"] == 1)
        assert state["seq"] > turned["seq"]
        ack = await chair.call("present:update", view)
        assert ack["error"]["code"] == "presenter_busy", ack
    finally:
        for t in tablets:
            await t.close()
        first.stop()
        second.stop()
