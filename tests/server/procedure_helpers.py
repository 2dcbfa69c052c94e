"""Helpers for the procedure's server tests: live socket.io members of the demo meeting."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import socketio

from tests.conftest import Client, Harness
from tests.server.core.test_realtime import connect, demo_meeting_id
from tests.server.heard import first_heard

EVENTS = ("agenda:changed", "attendance:changed", "floor:changed", "vote:updated",
          "minutes:generated", "conclusions:changed")


@dataclass
class Member:
    """One person's HTTP client and socket, with every procedure event they heard."""

    name: str
    http: Client
    sio: socketio.AsyncClient
    heard: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def emit(self, event: str, payload: dict[str, Any]) -> dict[str, Any]:
        ack: dict[str, Any] = await self.sio.call(event, payload, timeout=10)
        return ack

    async def ok(self, event: str, payload: dict[str, Any]) -> Any:
        ack = await self.emit(event, payload)
        assert ack["ok"], (self.name, event, ack)
        return ack["result"]

    async def error(self, event: str, payload: dict[str, Any]) -> str:
        ack = await self.emit(event, payload)
        assert not ack["ok"], (self.name, event, ack)
        return str(ack["error"]["code"])

    async def wait_for(self, event: str, check: Callable[[dict[str, Any]], bool],
                       timeout: float = 5) -> dict[str, Any]:
        return await first_heard(self.heard, self.changed, event, check, timeout)


async def join(h: Harness, name: str, meeting_id: int) -> Member:
    http = await h.login(name)
    sio = await connect(h, http)
    member = Member(name, http, sio)

    def listener(event: str) -> Callable[[dict[str, Any]], None]:
        def heard(payload: dict[str, Any]) -> None:
            member.heard.setdefault(event, []).append(payload)
            member.changed.set()
        return heard
    for event in EVENTS:
        sio.on(event, listener(event))
    ack = await sio.call("meeting:join", {"meeting_id": meeting_id}, timeout=5)
    assert ack["ok"], ack
    return member


async def open_demo(h: Harness, *names: str) -> tuple[int, dict[str, Member]]:
    """The demo meeting, opened by the chair, with the named members connected."""
    meeting_id = await demo_meeting_id(h)
    people = {n: await join(h, n, meeting_id) for n in ("chutri", *names)}
    status, _ = await people["chutri"].http.call("POST", f"/api/meetings/{meeting_id}/open")
    assert status == 200
    return meeting_id, people


async def add_item(secretary: Member, meeting_id: int, title: str, **kw: Any) -> dict[str, Any]:
    status, body = await secretary.http.call("POST", f"/api/meetings/{meeting_id}/agenda",
                                             {"title": title, **kw})
    assert status == 201, body
    return dict(body)


async def close_all(people: dict[str, Member]) -> None:
    for member in people.values():
        await member.sio.disconnect()
