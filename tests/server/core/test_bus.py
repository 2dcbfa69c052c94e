import logging
from dataclasses import dataclass

import pytest

from server.core.bus import Bus


@dataclass(frozen=True, slots=True)
class Opened:
    meeting_id: int


@dataclass(frozen=True, slots=True)
class Closed:
    meeting_id: int


async def test_handlers_run_in_subscription_order_with_the_event() -> None:
    bus, seen = Bus(), []

    async def first(event: Opened) -> None:
        seen.append(("first", event.meeting_id))

    async def second(event: Opened) -> None:
        seen.append(("second", event.meeting_id))

    bus.subscribe(Opened, first)
    bus.subscribe(Opened, second)
    await bus.publish(Opened(7))
    assert seen == [("first", 7), ("second", 7)]


async def test_only_the_handlers_of_the_events_type_run() -> None:
    bus, seen = Bus(), []

    async def on_closed(event: Closed) -> None:
        seen.append(event)

    bus.subscribe(Closed, on_closed)
    await bus.publish(Opened(1))
    await bus.publish(Closed(2))
    assert seen == [Closed(2)]


async def test_an_event_nobody_listens_to_is_published_quietly() -> None:
    await Bus().publish(Opened(1))


async def test_a_failing_handler_is_logged_and_does_not_stop_the_others(
        caplog: pytest.LogCaptureFixture) -> None:
    bus, seen = Bus(), []

    async def broken(event: Opened) -> None:
        raise RuntimeError("listener bug")

    async def after(event: Opened) -> None:
        seen.append(event)

    bus.subscribe(Opened, broken)
    bus.subscribe(Opened, after)
    with caplog.at_level(logging.ERROR, logger="server.core.bus"):
        await bus.publish(Opened(3))
    assert seen == [Opened(3)]
    [record] = caplog.records
    assert "Opened" in record.getMessage() and "broken" in record.getMessage()
    assert record.exc_info and isinstance(record.exc_info[1], RuntimeError)
