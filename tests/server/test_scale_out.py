"""Two real server processes on PostgreSQL + Redis: an event emitted by one reaches the other's
clients (python-socketio's Redis manager)."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio

from testkit.processes import ServerProcess, start_server
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
    first = start_server("--demo", "--data-dir", str(tmp_path / "a"), env=env,
                         preimported=True)
    second = start_server("--data-dir", str(tmp_path / "b"), env=env,
                          preimported=True)
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
            async def opened() -> dict[str, Any]:
                while True:  # (another test's servers on the same Redis may be heard too)
                    update: dict[str, Any] = await got.get()
                    if update["id"] == meeting_id and update["status"] == "open":
                        return update
            await asyncio.wait_for(opened(), 10)
            await sio.disconnect()
    finally:
        first.stop()
        second.stop()



@dataclass
class Person:
    """One person's HTTP session and socket on one of the processes, with what was pushed."""

    http: aiohttp.ClientSession
    sio: socketio.AsyncClient
    base: str
    csrf: str
    user_id: int
    heard: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    async def ok(self, event: str, **payload: Any) -> Any:
        ack = await self.sio.call(event, payload, timeout=5)
        assert ack["ok"], (event, ack)
        return ack["result"]

    async def post(self, path: str) -> None:
        async with self.http.post(self.base + path, headers={"X-CSRF-Token": self.csrf}) as r:
            assert r.status == 200, await r.text()

    async def wait_for(self, event: str, check: Callable[[dict[str, Any]], bool],
                       timeout: float = 3) -> dict[str, Any]:
        async def look() -> dict[str, Any]:
            while True:
                found = [e for e in self.heard.get(event, []) if check(e)]
                if found:
                    return found[0]
                await asyncio.sleep(0.02)
        return await asyncio.wait_for(look(), timeout)


@dataclass
class Deployment:
    first: ServerProcess  # A, which created the demo data
    second: ServerProcess  # B
    enter: Callable[[ServerProcess, str], Awaitable[Person]]


@asynccontextmanager
async def two_processes(tmp_path: Path, postgres_url: str) -> AsyncIterator[Deployment]:
    """Processes A and B sharing PostgreSQL and Redis. `enter(process, username)` logs a demo
    person in there and connects their socket (both closed at the end)."""
    need_service("Redis", REDIS_PORT)
    env = {"HOPSO_DATABASE_URL": postgres_url,
           "HOPSO_REDIS_URL": f"redis://127.0.0.1:{REDIS_PORT}/0"}
    first = start_server("--demo", "--data-dir", str(tmp_path / "a"), env=env,
                         preimported=True)
    second = start_server("--data-dir", str(tmp_path / "b"), env=env,
                          preimported=True)
    logins, people = first.logins(), list[Person]()

    async def enter(process: ServerProcess, username: str) -> Person:
        jar = aiohttp.CookieJar(unsafe=True)
        http = aiohttp.ClientSession(cookie_jar=jar)
        async with http.post(process.base + "/api/login",
                             json={"username": username, "password": logins[username]}) as r:
            assert r.status == 200, await r.text()
            body = await r.json()
        person = Person(http, socketio.AsyncClient(reconnection=False), process.base,
                        body["csrf_token"], body["user"]["id"])
        people.append(person)
        for event in ("media:closed", "media:floor"):
            person.sio.on(event, partial(record, person.heard.setdefault(event, [])))
        await person.sio.connect(process.base, transports=["websocket"],
                                 headers={"Cookie": "; ".join(f"{c.key}={c.value}" for c in jar)})
        return person
    try:
        yield Deployment(first, second, enter)
    finally:
        for person in people:
            await person.sio.disconnect()
            await person.http.close()
        first.stop()
        second.stop()


def record(into: list[dict[str, Any]], data: dict[str, Any]) -> None:
    into.append(data)


async def open_demo_meeting(chair: Person) -> int:
    async with chair.http.get(chair.base + "/api/meetings") as r:
        meeting_id = int((await r.json())["meetings"][0]["id"])
    await chair.post(f"/api/meetings/{meeting_id}/open")
    return meeting_id


async def test_a_meeting_closed_through_one_process_ends_its_media_in_another(
        tmp_path: Path, postgres_url: str) -> None:
    """The chair closes the meeting through process A while a delegate's media lives in
    process B: B's room closes too (MeetingClosed crosses over Redis, server/core/bus_bridge.py)."""
    async with two_processes(tmp_path, postgres_url) as at:
        chair = await at.enter(at.first, "chutri")
        meeting_id = await open_demo_meeting(chair)
        delegate = await at.enter(at.second, "daibieu")
        await delegate.ok("meeting:join", meeting_id=meeting_id)
        peer_id = (await delegate.ok("media:join", meeting_id=meeting_id))["peer_id"]
        stats = f"{at.second.base}/api/meetings/{meeting_id}/media/stats"
        async with chair.http.get(stats) as r:  # B's room holds the delegate's peer
            assert [p["peer_id"] for p in (await r.json())["peers"]] == [peer_id]

        await chair.post(f"/api/meetings/{meeting_id}/close")
        closed = await delegate.wait_for("media:closed", lambda e: True)
        assert closed == {"meeting_id": meeting_id, "peer_id": peer_id,
                          "reason": "meeting-closed"}
        async with chair.http.get(stats) as r:
            assert (await r.json())["peers"] == []
        ack = await delegate.sio.call("media:join", {"meeting_id": meeting_id}, timeout=5)
        assert ack["error"]["code"] == "meeting_not_open"


async def test_the_floor_given_through_one_process_is_the_main_view_in_another(
        tmp_path: Path, postgres_url: str) -> None:
    """The chair's socket is on process A, the delegate's media on B: B's room learns the
    floor (FloorChanged crosses over Redis) and pushes its holder with the delegate's peer;
    A, with nobody in this meeting's media, pushes no holder of its own (no peers)."""
    async with two_processes(tmp_path, postgres_url) as at:
        chair = await at.enter(at.first, "chutri")
        meeting_id = await open_demo_meeting(chair)
        await chair.ok("meeting:join", meeting_id=meeting_id)
        delegate = await at.enter(at.second, "daibieu")
        await delegate.ok("meeting:join", meeting_id=meeting_id)
        await delegate.ok("attendance:check_in", meeting_id=meeting_id, mode="online")
        peer_id = (await delegate.ok("media:join", meeting_id=meeting_id))["peer_id"]

        asked = await delegate.ok("floor:request", meeting_id=meeting_id)
        await chair.ok("floor:grant", meeting_id=meeting_id, request_id=asked["request_id"])
        holder = await delegate.wait_for("media:floor", lambda e: e["holder"] is not None)
        assert holder["holder"]["user_id"] == delegate.user_id
        await asyncio.sleep(1)  # a second, different holder from A would be here by now
        assert [e["holder"]["peer_ids"] for e in delegate.heard["media:floor"]] == [[peer_id]]
        # Who joins B's media later is told the floor too.
        secretary = await at.enter(at.second, "thuky")
        await secretary.ok("meeting:join", meeting_id=meeting_id)
        joined = await secretary.ok("media:join", meeting_id=meeting_id)
        assert joined["floor"]["user_id"] == delegate.user_id


async def test_what_is_done_through_one_process_is_on_the_timeline_recorded_in_another(
        tmp_path: Path, postgres_url: str) -> None:
    """The chair records the meeting through process A; the secretary moves the agenda and a
    delegate writes to everyone through B: A's timeline notes both (AgendaChanged and
    ChatPosted cross over Redis to the process recording the meeting)."""
    async with two_processes(tmp_path, postgres_url) as at:
        chair = await at.enter(at.first, "chutri")
        meeting_id = await open_demo_meeting(chair)
        await chair.ok("meeting:join", meeting_id=meeting_id)
        await chair.ok("recording:start", meeting_id=meeting_id)
        secretary = await at.enter(at.second, "thuky")
        delegate = await at.enter(at.second, "daibieu")
        async with secretary.http.post(f"{secretary.base}/api/meetings/{meeting_id}/agenda",
                                       json={"title": "Báo cáo kinh tế - xã hội"},
                                       headers={"X-CSRF-Token": secretary.csrf}) as r:
            assert r.status == 201, await r.text()
            item_id = (await r.json())["id"]
        await secretary.ok("agenda:set_current", meeting_id=meeting_id, item_id=item_id)
        await delegate.ok("chat:send", meeting_id=meeting_id, to="all", text="Tôi đồng ý")

        async def timeline() -> list[dict[str, Any]]:
            api = f"{chair.base}/api/meetings/{meeting_id}/recordings"
            async with chair.http.get(api) as r:
                (recording,) = (await r.json())["recordings"]
            async with chair.http.get(f"{api}/{recording['id']}/timeline") as r:
                return list((await r.json())["entries"])

        async def noted() -> list[dict[str, Any]]:
            while True:
                entries = await timeline()
                if any(e["kind"] == "chat" for e in entries):
                    return entries
                await asyncio.sleep(0.1)
        entries = await asyncio.wait_for(noted(), 5)
        await chair.ok("recording:stop", meeting_id=meeting_id)
    assert [e["data"]["text"] for e in entries if e["kind"] == "chat"] == ["Tôi đồng ý"]
    assert [e["data"]["item_id"] for e in entries if e["kind"] == "agenda"][-1] == item_id
