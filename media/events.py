"""Events the SFU reports to the server, and the observer that delivers them."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from .types import CloseReason, Direction, Kind, ProducerInfo, Source, TransportState

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProducerAdded:
    router_id: str
    producer: ProducerInfo


@dataclass(frozen=True)
class ProducerClosed:
    router_id: str
    peer_id: str
    producer_id: str
    kind: Kind
    source: Source
    reason: CloseReason


@dataclass(frozen=True)
class ProducerPaused:
    """Server-side pause (chair mute) changed."""

    router_id: str
    peer_id: str
    producer_id: str
    paused: bool


@dataclass(frozen=True)
class ConsumerClosed:
    router_id: str
    peer_id: str  # the subscriber
    consumer_id: str
    producer_id: str
    reason: CloseReason


@dataclass(frozen=True)
class RenegotiationNeeded:
    """The peer's receive transport changed; call `await peer.offer()`."""

    router_id: str
    peer_id: str


@dataclass(frozen=True)
class TransportStateChanged:
    router_id: str
    peer_id: str
    direction: Direction
    state: TransportState


@dataclass(frozen=True)
class PeerClosed:
    router_id: str
    peer_id: str
    reason: CloseReason


@dataclass(frozen=True)
class ActiveSpeakerChanged:
    """The loudest audio producer changed; ids are None after silence."""

    router_id: str
    peer_id: str | None
    producer_id: str | None
    level_dbov: int | None  # 0 = loudest, 127 = silence (RFC 6464 magnitude)


@dataclass(frozen=True)
class DownlinkChanged:
    """A subscriber fell to audio only (its downlink estimate is below the floor) or
    got video back (media/allocator.py). estimate_bps None: no feedback."""

    router_id: str
    peer_id: str
    video_off: bool
    estimate_bps: int | None


MediaEvent = (
    ProducerAdded
    | ProducerClosed
    | ProducerPaused
    | ConsumerClosed
    | RenegotiationNeeded
    | TransportStateChanged
    | PeerClosed
    | ActiveSpeakerChanged
    | DownlinkChanged
)
Listener = Callable[[MediaEvent], None]


class EventBus:
    """Synchronous observer list; a parent bus receives everything too.

    Listeners run inline on the event loop, so they must not block; a failing
    listener is logged and does not stop the others.
    """

    def __init__(self, parent: EventBus | None = None) -> None:
        self._listeners: list[Listener] = []
        self._parent = parent

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Register `listener`; returns a function that removes it."""
        self._listeners.append(listener)

        def remove() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return remove

    def emit(self, event: MediaEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                logger.exception("media event listener failed on %r", event)
        if self._parent is not None:
            self._parent.emit(event)
