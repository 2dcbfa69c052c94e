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
        # (handler, also for events relayed from other processes)
        self._handlers: defaultdict[type, list[tuple[Handler, bool]]] = defaultdict(list)

    def subscribe(self, event_type: type[E], handler: Callable[[E], Awaitable[None]], *,
                  relayed: bool = False) -> None:
        """`relayed`: also call `handler` for the event when another process published it
        (server/core/bus_bridge.py re-publishes those with HOPSO_REDIS_URL). Left False, a
        handler that acts for the whole deployment (journaling down the cascade, reporting
        up) runs once, in the process where the change happened."""
        self._handlers[event_type].append((handler, relayed))

    async def publish(self, event: object, *, relayed: bool = False) -> None:
        """Await every handler of type(event) (only those subscribed with `relayed` when the
        event comes from another process). One that raises is logged (event type and
        handler name, with its traceback) and does not keep the others from running: the
        publisher's own change already happened and is not undone by a listener's failure."""
        for handler, for_relayed in tuple(self._handlers.get(type(event), ())):
            if relayed and not for_relayed:
                continue
            try:
                await handler(event)
            except Exception:
                log.exception("%s handler %s failed", type(event).__name__,
                              getattr(handler, "__qualname__", repr(handler)))
