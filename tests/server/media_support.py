"""aiortc clients of the video conference through the real app: signaling over socket.io
(media:* events), media through the SFU. They reuse testkit/aiortc_clients.py's pre-encoded
publishers and decoding subscribers, handing them a socket.io stand-in for `media.Peer`."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import socketio

from media import Kind
from server.core.settings import MediaTimings
from testkit.aiortc_clients import EncodedMedia, Publisher, Subscriber
from tests.conftest import Client, Harness
from tests.server.core.test_realtime import connect
from tests.server.heard import first_heard

PUSHED = ("media:offer", "media:producer-added", "media:producer-closed",
          "media:producer-paused", "media:peer-joined", "media:peer-closed",
          "media:active-speaker", "media:floor", "media:lock", "media:closed", "media:stats",
          "media:quality", "media:transport", "media:consumer-closed")
# Short enough that a lost peer or a stats push shows within a test's waits.
MEDIA_TIMINGS = MediaTimings(ice_timeout_s=3, rtcp_interval_s=0.5, stats_interval_s=0.5)
CANDIDATE = re.compile(r"^a=candidate:\S+ \d+ \S+ \d+ (\S+) \d+ typ (\w+)", re.MULTILINE)


def candidate_addresses(sdp: str) -> list[str]:
    """Connection addresses of every a=candidate line."""
    return [m[0] for m in CANDIDATE.findall(sdp)]


def offer_of(data: dict[str, Any] | None) -> SimpleNamespace | None:
    return SimpleNamespace(sdp=data["sdp"], consumers=data["consumers"]) if data else None


class MediaError(AssertionError):
    def __init__(self, event: str, error: dict[str, Any]) -> None:
        super().__init__(f"{event}: {error}")
        self.code, self.message = error["code"], error["message"]


@dataclass
class SioPeer:
    """Stands in for media.Peer in Publisher/Subscriber: each call is a media:* event."""

    sio: socketio.AsyncClient
    meeting_id: int
    sdps: list[str] = field(default_factory=list)  # every SDP the server sent

    async def call(self, event: str, **payload: Any) -> Any:
        ack = await self.sio.call(event, {"meeting_id": self.meeting_id, **payload}, timeout=10)
        if not ack["ok"]:
            raise MediaError(event, ack["error"])
        return ack["result"]

    async def publish(self, sdp: str, sources: dict[str, str] | None = None) -> SimpleNamespace:
        payload: dict[str, Any] = {"sdp": sdp}
        if sources:
            payload["sources"] = sources
        result = await self.call("media:publish", **payload)
        self.sdps.append(result["sdp"])
        added = [SimpleNamespace(id=p["id"], kind=Kind(p["kind"]), raw=p)
                 for p in result["added"]]
        return SimpleNamespace(sdp=result["sdp"], added=added, removed=result["removed"])

    async def subscribe(self, *producer_ids: str) -> SimpleNamespace:
        result = await self.call("media:subscribe", producer_ids=list(producer_ids))
        if result["offer"]:
            self.sdps.append(result["offer"]["sdp"])
        return SimpleNamespace(consumers=result["consumers"], offer=offer_of(result["offer"]))

    async def set_answer(self, sdp: str) -> SimpleNamespace | None:
        result = await self.call("media:answer", sdp=sdp)
        if result["offer"]:
            self.sdps.append(result["offer"]["sdp"])
        return offer_of(result["offer"])


@dataclass
class MediaClient:
    """One logged-in person's socket with their media session and everything pushed."""

    name: str
    http: Client
    sio: socketio.AsyncClient
    peer: SioPeer
    heard: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    joined: dict[str, Any] = field(default_factory=dict)
    tasks: set[asyncio.Future[None]] = field(default_factory=set)
    publisher: Publisher | None = None
    subscriber: Subscriber | None = None
    _offers: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def ok(self, event: str, **payload: Any) -> Any:
        return await self.peer.call(event, **payload)

    async def error(self, event: str, **payload: Any) -> str:
        try:
            result = await self.peer.call(event, **payload)
        except MediaError as exc:
            return str(exc.code)
        raise AssertionError(f"{self.name}: {event} succeeded: {result}")

    async def join(self) -> dict[str, Any]:
        self.joined = await self.ok("media:join")
        return self.joined

    async def publish(self, media: EncodedMedia, **kw: Any) -> Publisher:
        self.publisher = Publisher(self.peer, media, **kw)  # type: ignore[arg-type]
        await self.publisher.publish()
        return self.publisher

    def receiver(self) -> Subscriber:
        if self.subscriber is None:
            self.subscriber = Subscriber(self.peer)  # type: ignore[arg-type]
        return self.subscriber

    async def subscribe(self, *producer_ids: str) -> None:
        async with self._offers:
            await self.receiver().subscribe(*producer_ids)

    async def _pushed_offer(self, data: dict[str, Any]) -> None:
        self.peer.sdps.append(data["offer"]["sdp"])
        async with self._offers:
            await self.receiver().apply(offer_of(data["offer"]))  # type: ignore[arg-type]

    async def wait_for(self, event: str, check: Callable[[dict[str, Any]], bool] = lambda _: True,
                       timeout: float = 8) -> dict[str, Any]:
        return await first_heard(self.heard, self.changed, event, check, timeout)

    async def close(self) -> None:
        for pc_owner in (self.publisher, self.subscriber):
            if pc_owner is not None:
                await pc_owner.close()
        if self.sio.connected:
            await self.sio.disconnect()


async def media_client(h: Harness, name: str, meeting_id: int) -> MediaClient:
    http = await h.login(name)
    sio = await connect(h, http)
    return listening(MediaClient(name, http, sio, SioPeer(sio, meeting_id)))


def listening(client: MediaClient) -> MediaClient:
    """Record every pushed media:* event; apply pushed offers."""
    sio = client.sio

    def listener(event: str) -> Callable[[dict[str, Any]], None]:
        def heard(payload: dict[str, Any]) -> None:
            client.heard.setdefault(event, []).append(payload)
            client.changed.set()
            if event == "media:offer":
                task = asyncio.ensure_future(client._pushed_offer(payload))
                client.tasks.add(task)  # held until done
                task.add_done_callback(client.tasks.discard)
        return heard

    for event in PUSHED:
        sio.on(event, listener(event))
    return client
