"""Two real server processes on PostgreSQL + Redis: an event emitted by one reaches the other's
clients (python-socketio's Redis manager)."""

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio

from testkit.processes import start_server
from tests.conftest import REDIS_PORT, need_service

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


async def login(session: aiohttp.ClientSession, base: str, username: str,
                password: str) -> str:
    async with session.post(base + "/api/login",
                            json={"username": username, "password": password}) as r:
        assert r.status == 200, await r.text()
        return str((await r.json())["csrf_token"])


async def test_event_from_one_process_reaches_a_client_of_another(
        tmp_path: Path, postgres_url: str) -> None:
    need_service("Redis", REDIS_PORT)
    env = {"HOPSO_DATABASE_URL": postgres_url,
           "HOPSO_REDIS_URL": f"redis://127.0.0.1:{REDIS_PORT}/0"}
    first = start_server("--demo", "--data-dir", str(tmp_path / "a"), env=env)
    second = start_server("--data-dir", str(tmp_path / "b"), env=env)
    try:
        logins = first.logins()
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as delegate_http:
            await login(delegate_http, second.base, "daibieu", logins["daibieu"])
            async with delegate_http.get(second.base + "/api/meetings") as r:
                meeting_id = (await r.json())["meetings"][0]["id"]
            cookie = "; ".join(f"{c.key}={c.value}" for c in jar)
            sio = socketio.AsyncClient(reconnection=False)
            got: asyncio.Queue[Any] = asyncio.Queue()
            sio.on("meeting:updated", got.put_nowait)
            await sio.connect(second.base, headers={"Cookie": cookie}, transports=["websocket"])
            ack = await sio.call("meeting:join", {"meeting_id": meeting_id}, timeout=5)
            assert ack["ok"], ack

            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as chair:
                csrf = await login(chair, first.base, "chutri", logins["chutri"])
                async with chair.post(f"{first.base}/api/meetings/{meeting_id}/open",
                                      headers={"X-CSRF-Token": csrf}) as r:
                    assert r.status == 200
            update = await asyncio.wait_for(got.get(), 10)
            assert update["id"] == meeting_id and update["status"] == "open"
            await sio.disconnect()
    finally:
        first.stop()
        second.stop()


async def test_a_meeting_closed_through_one_process_ends_its_media_in_another(
        tmp_path: Path, postgres_url: str) -> None:
    """The chair closes the meeting through process A while a delegate's media lives in
    process B: B's room closes too (MeetingClosed crosses over Redis, server/core/bus_bridge.py)."""
    need_service("Redis", REDIS_PORT)
    env = {"HOPSO_DATABASE_URL": postgres_url,
           "HOPSO_REDIS_URL": f"redis://127.0.0.1:{REDIS_PORT}/0"}
    first = start_server("--demo", "--data-dir", str(tmp_path / "a"), env=env)
    second = start_server("--data-dir", str(tmp_path / "b"), env=env)
    delegate = socketio.AsyncClient(reconnection=False)
    try:
        logins = first.logins()
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as delegate_http, \
                aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as chair:
            await login(delegate_http, second.base, "daibieu", logins["daibieu"])
            async with delegate_http.get(second.base + "/api/meetings") as r:
                meeting_id = (await r.json())["meetings"][0]["id"]
            csrf = await login(chair, first.base, "chutri", logins["chutri"])
            async with chair.post(f"{first.base}/api/meetings/{meeting_id}/open",
                                  headers={"X-CSRF-Token": csrf}) as r:
                assert r.status == 200, await r.text()

            closed: asyncio.Queue[Any] = asyncio.Queue()
            delegate.on("media:closed", closed.put_nowait)
            await delegate.connect(second.base, transports=["websocket"],
                                   headers={"Cookie": "; ".join(f"{c.key}={c.value}" for c in jar)})
            ack = await delegate.call("meeting:join", {"meeting_id": meeting_id}, timeout=5)
            assert ack["ok"], ack
            ack = await delegate.call("media:join", {"meeting_id": meeting_id}, timeout=5)
            assert ack["ok"], ack
            peer_id = ack["result"]["peer_id"]
            stats = f"{second.base}/api/meetings/{meeting_id}/media/stats"
            async with chair.get(stats) as r:  # B's room holds the delegate's peer
                assert [p["peer_id"] for p in (await r.json())["peers"]] == [peer_id]

            async with chair.post(f"{first.base}/api/meetings/{meeting_id}/close",
                                  headers={"X-CSRF-Token": csrf}) as r:
                assert r.status == 200, await r.text()
            assert await asyncio.wait_for(closed.get(), 3) == {
                "meeting_id": meeting_id, "peer_id": peer_id, "reason": "meeting-closed"}
            async with chair.get(stats) as r:
                assert (await r.json())["peers"] == []
            ack = await delegate.call("media:join", {"meeting_id": meeting_id}, timeout=5)
            assert ack["error"]["code"] == "meeting_not_open"
    finally:
        await delegate.disconnect()
        first.stop()
        second.stop()
