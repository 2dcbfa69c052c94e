"""The bus across processes (server/core/bus_bridge.py), on the real Redis: each Bus here
stands for one process's bus."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
from redis import asyncio as aioredis

from server.core.bus import Bus
from server.core.bus_bridge import BusBridge
from server.meetings.events import MeetingClosed
from server.procedure.events import FloorChanged
from tests.conftest import REDIS_PORT, need_service

pytestmark = pytest.mark.redis
REDIS_URL = f"redis://127.0.0.1:{REDIS_PORT}/0"


def recorder(bus: Bus, event_type: type, relayed: bool = True) -> list[object]:
    seen: list[object] = []

    async def record(event: object) -> None:
        seen.append(event)
    bus.subscribe(event_type, record, relayed=relayed)
    return seen


async def until(condition: Callable[[], bool], timeout: float = 3) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)
    await asyncio.wait_for(poll(), timeout)


@asynccontextmanager
async def running(*bridges: BusBridge) -> AsyncIterator[None]:
    async with AsyncExitStack() as stack:
        for bridge in bridges:
            await stack.enter_async_context(asynccontextmanager(bridge.run)())
        yield


def listeners() -> int:
    return sum(t.get_name() == "bus-bridge" for t in asyncio.all_tasks())


@pytest.fixture
def channel() -> str:
    need_service("Redis", REDIS_PORT)
    return f"hopso-test:bus:{uuid.uuid4().hex}"


async def test_an_allowed_event_reaches_the_other_process_once_and_not_the_sender_twice(
        channel: str) -> None:
    first, second = Bus(), Bus()
    at_first, at_second = recorder(first, MeetingClosed), recorder(second, MeetingClosed)
    async with running(BusBridge(first, REDIS_URL, channel, [MeetingClosed]),
                       BusBridge(second, REDIS_URL, channel, [MeetingClosed])):
        await first.publish(MeetingClosed(7))
        await until(lambda: at_second == [MeetingClosed(7)])
        await asyncio.sleep(0.3)  # an echo (sender's own message, or sent back) would be here
        assert at_first == [MeetingClosed(7)] and at_second == [MeetingClosed(7)]


async def test_a_relayed_event_reaches_only_the_handlers_subscribed_for_relayed_ones(
        channel: str) -> None:
    """The cascade journals a vote down once, where it changed; the recording's timeline in
    the process recording the meeting hears the change made through another process."""
    first, second = Bus(), Bus()
    local_first = recorder(first, MeetingClosed, relayed=False)
    local_second = recorder(second, MeetingClosed, relayed=False)
    everywhere_second = recorder(second, MeetingClosed)
    async with running(BusBridge(first, REDIS_URL, channel, [MeetingClosed]),
                       BusBridge(second, REDIS_URL, channel, [MeetingClosed])):
        await first.publish(MeetingClosed(7))
        await until(lambda: everywhere_second == [MeetingClosed(7)])
        await asyncio.sleep(0.3)
        assert local_first == [MeetingClosed(7)] and local_second == []


async def test_events_outside_the_allow_list_stay_in_their_process(channel: str) -> None:
    first, second = Bus(), Bus()
    at_second = recorder(second, FloorChanged)
    closed = recorder(second, MeetingClosed)
    async with running(BusBridge(first, REDIS_URL, channel, [MeetingClosed]),
                       BusBridge(second, REDIS_URL, channel, [MeetingClosed])):
        await first.publish(FloorChanged(7, 3, "Hùng"))
        await first.publish(MeetingClosed(7))  # published after: arrives after
        await until(lambda: closed == [MeetingClosed(7)])
        assert at_second == []


async def test_a_malformed_message_is_logged_once_and_dropped(
        channel: str, caplog: pytest.LogCaptureFixture) -> None:
    bus = Bus()
    seen = recorder(bus, MeetingClosed)
    origin = uuid.uuid4().hex
    bad: list[bytes | str] = [b"\xff not json", "[1, 2]", json.dumps({"type": "MeetingClosed", "origin": origin}),
           json.dumps({"type": "AdminCreated", "origin": origin, "event": {"meeting_id": 1}}),
           json.dumps({"type": "MeetingClosed", "origin": origin, "event": {"meeting_id": "1"}}),
           json.dumps({"type": "MeetingClosed", "origin": origin,
                       "event": {"meeting_id": 1, "extra": 2}}),
           json.dumps({"type": "MeetingClosed", "origin": origin, "event": {}})]
    good = json.dumps({"type": "MeetingClosed", "origin": origin, "event": {"meeting_id": 4}})
    redis = aioredis.Redis.from_url(REDIS_URL)
    try:
        with caplog.at_level(logging.WARNING, logger="server.core.bus_bridge"):
            async with running(BusBridge(bus, REDIS_URL, channel, [MeetingClosed])):
                for message in [*bad, good]:
                    await redis.publish(channel, message)
                await until(lambda: seen == [MeetingClosed(4)])
    finally:
        await redis.aclose()
    dropped = [r for r in caplog.records if "dropped a malformed message" in r.getMessage()]
    assert len(dropped) == len(bad) and all(r.exc_info is None for r in dropped)


async def test_a_closed_bridge_stops_listening_and_sending(channel: str) -> None:
    first, second = Bus(), Bus()
    at_second = recorder(second, MeetingClosed)
    bridge = BusBridge(first, REDIS_URL, channel, [MeetingClosed])
    async with running(BusBridge(second, REDIS_URL, channel, [MeetingClosed])):
        async with running(bridge):
            assert listeners() == 2
        assert listeners() == 1  # the closed one's task has ended
        await first.publish(MeetingClosed(2))  # still delivered in its own process
        await asyncio.sleep(0.3)
        assert at_second == []
