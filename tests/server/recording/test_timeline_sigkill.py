"""A recording's timeline survives its server being killed (SIGKILL, no stop): a real `run.py`
records while the agenda moves on; after the restart the recording is listed, not running,
without a stop time, and every entry written before the kill is there, in order. Recording
again makes a new recording beside it."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import aiohttp
import socketio

from testkit.processes import ServerProcess, start_server
from tests.conftest import Client

ARGS = ("--demo",)
ENV = {"HOPSO_FAST_HASH": "1"}


async def login(server: ServerProcess, username: str) -> Client:
    client = Client(aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)), server.base)
    status, body = await client.call("POST", "/api/login", {
        "username": username, "password": server.logins()[username]})
    assert status == 200, body
    client.csrf, client.user = body["csrf_token"], body["user"]
    return client


async def rest(client: Client, method: str, path: str, body: Any = None) -> Any:
    status, answer = await client.call(method, path, body)
    assert status in (200, 201), (method, path, status, answer)
    return answer


async def emit(sio: socketio.AsyncClient, event: str, payload: dict[str, Any]) -> Any:
    ack = await sio.call(event, payload, timeout=10)
    assert ack["ok"], (event, ack)
    return ack["result"]


async def timeline(client: Client, m: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    listed = (await rest(client, "GET", f"/api/meetings/{m}/recordings"))["recordings"]
    body = await rest(client, "GET", f"/api/meetings/{m}/recordings/{listed[0]['id']}/timeline")
    return listed, body["entries"]


async def test_the_timeline_survives_a_killed_server(tmp_path: Path) -> None:
    data = ("--data-dir", str(tmp_path / "data"))
    server = start_server(*ARGS, *data, env=ENV, preimported=True)
    chair: Client | None = None
    sio = socketio.AsyncClient(reconnection=False)
    try:
        chair = await login(server, "chutri")
        m = (await rest(chair, "GET", "/api/meetings"))["meetings"][0]["id"]
        await rest(chair, "POST", f"/api/meetings/{m}/open")
        items = [(await rest(chair, "POST", f"/api/meetings/{m}/agenda", {"title": t}))["id"]
                 for t in ("Mục một", "Mục hai")]
        await sio.connect(server.base, headers={"Cookie": chair.cookie_header()},
                          transports=["websocket"], wait_timeout=10)
        await emit(sio, "meeting:join", {"meeting_id": m})
        await emit(sio, "recording:start", {"meeting_id": m})
        for item in items:
            await emit(sio, "agenda:set_current", {"meeting_id": m, "item_id": item})
        before, entries = await timeline(chair, m)
        assert [e["kind"] for e in entries] == ["recording_started", "agenda", "agenda"]
        assert before[0]["running"] is True
        server.process.send_signal(signal.SIGKILL)  # no stop, no lifespan: the process is gone
        server.process.wait(10)
    finally:
        await sio.disconnect()
        if chair is not None:
            await chair.session.close()
        server.stop()

    server = start_server(*ARGS, *data, env=ENV, preimported=True)
    try:
        chair = await login(server, "chutri")
        after, kept = await timeline(chair, m)
        assert kept == entries
        assert after[0]["running"] is False and after[0]["stopped_at"] is None
        sio = socketio.AsyncClient(reconnection=False)
        await sio.connect(server.base, headers={"Cookie": chair.cookie_header()},
                          transports=["websocket"], wait_timeout=10)
        await emit(sio, "meeting:join", {"meeting_id": m})
        assert (await emit(sio, "recording:status", {"meeting_id": m}))["recording"] is False
        await emit(sio, "recording:start", {"meeting_id": m})
        await emit(sio, "recording:stop", {"meeting_id": m})
        listed = (await rest(chair, "GET", f"/api/meetings/{m}/recordings"))["recordings"]
        assert [r["stopped_at"] is None for r in listed] == [True, False]
        await sio.disconnect()
        await chair.session.close()
    finally:
        server.stop()
