"""Pushes from the conference to its clients, in one ordered queue.

The SFU's listener runs inline on the loop and must never block, so a room turns each media
event into a typed push here and one task (`Outbox.drain`, started by the hub) delivers
them in order: what a client sees is in the order things happened, chair controls and the
SFU's own events alike. Two pushes need work at delivery time: `OfferDue` (the peer's new
recv offer is made when it is sent, so piled-up changes give one offer) and `RouterIdle`
(a meeting's router is freed once its last peer has gone).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ToMeeting:
    """An event for everyone in the meeting's channel; delivered with ``meeting_id`` first."""

    meeting_id: int
    event: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ToConnection:
    """An event for one socket.io connection, delivered as is."""

    sid: str
    event: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class OfferDue:
    """The SFU asked to renegotiate this peer's recv transport (RenegotiationNeeded)."""

    meeting_id: int
    peer_id: str


@dataclass(frozen=True, slots=True)
class RouterIdle:
    """A peer of the meeting closed: if it was the last, the router is freed."""

    meeting_id: int


Push = ToMeeting | ToConnection | OfferDue | RouterIdle
Deliver = Callable[[Push], Awaitable[None]]


class Outbox:
    def __init__(self) -> None:
        self._queue: asyncio.Queue[Push] = asyncio.Queue()

    def put(self, push: Push) -> None:
        """Never blocks (unbounded: pushes are small and drained continuously)."""
        self._queue.put_nowait(push)

    async def drain(self, deliver: Deliver) -> None:
        """Deliver pushes in order, forever; a failed delivery is logged and skipped."""
        while True:
            push = await self._queue.get()
            try:
                await deliver(push)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("media: delivering %r failed", push)
