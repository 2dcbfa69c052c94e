"""The in-app event bus: how one feature tells others that something happened, without
knowing who listens (docs/architecture.md (Server features)).

Events are frozen dataclasses defined in the publishing feature's events.py. A handler is
looked up by the event's exact type; handlers run one after the other, in subscription
order, so a subscriber sees events in the order they were published.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

log = logging.getLogger(__name__)
E = TypeVar("E")
Handler = Callable[[Any], Awaitable[None]]


class Bus:
    def __init__(self) -> None:
        self._handlers: defaultdict[type, list[Handler]] = defaultdict(list)

    def subscribe(self, event_type: type[E], handler: Callable[[E], Awaitable[None]]) -> None:
        self._handlers[event_type].append(handler)

    async def publish(self, event: object) -> None:
        """Await every handler of type(event). One that raises is logged (event type and
        handler name, with its traceback) and does not keep the others from running: the
        publisher's own change already happened and is not undone by a listener's failure."""
        for handler in tuple(self._handlers.get(type(event), ())):
            try:
                await handler(event)
            except Exception:
                log.exception("%s handler %s failed", type(event).__name__,
                              getattr(handler, "__qualname__", repr(handler)))
