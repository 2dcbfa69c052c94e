"""Router: one meeting. Owns its peers, knows every producer."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from aiortc import RTCCertificate

from .closing import CloseOnce
from .config import MediaConfig
from .errors import ClosedError, MediaError, NotFoundError
from .events import (
    ActiveSpeakerChanged,
    EventBus,
    Listener,
    MediaEvent,
    PeerClosed,
    ProducerAdded,
    ProducerClosed,
    ProducerPaused,
)
from .peer import Peer
from .producer import Producer
from .speaker import ActiveSpeakerDetector
from .stats import RouterStats
from .types import CloseReason, ProducerInfo

if TYPE_CHECKING:
    from .sfu import SFU

logger = logging.getLogger(__name__)


class Router:
    """A meeting: peers publish producers here and consume each other's."""

    def __init__(self, sfu: SFU, router_id: str, max_bitrate_bps: int | None) -> None:
        self.id = router_id
        self.config: MediaConfig = sfu.config
        self.max_bitrate_bps = max_bitrate_bps or sfu.config.max_bitrate_bps
        self._sfu = sfu
        self._bus = EventBus(parent=sfu.bus)
        self._peers: dict[str, Peer] = {}
        self._producers: dict[str, Producer] = {}
        self._closing = CloseOnce()
        # Peers whose video comes first in every subscriber's bandwidth allocation, with the
        # active speaker's (the floor holder: set by the server, media/allocator.py).
        self.priority_peers: frozenset[str] = frozenset()
        self._speaker = ActiveSpeakerDetector(self.config.speaker_interval_s,
                                              self.config.speaker_threshold_dbov,
                                              self.config.speaker_hold_windows)

    @property
    def certificate(self) -> RTCCertificate:
        return self._sfu.certificate

    @property
    def closed(self) -> bool:
        return self._closing.started

    # -- peers --------------------------------------------------------------------------
    def add_peer(self, peer_id: str, app_data: dict[str, Any] | None = None) -> Peer:
        if self.closed:
            raise ClosedError(f"router {self.id} is closed")
        if peer_id in self._peers:
            raise MediaError(f"peer {peer_id} is already in router {self.id}")
        peer = Peer(self, peer_id, dict(app_data or {}))
        self._peers[peer_id] = peer
        return peer

    def peer(self, peer_id: str) -> Peer:
        peer = self._peers.get(peer_id)
        if peer is None:
            raise NotFoundError(f"no peer {peer_id} in router {self.id}")
        return peer

    @property
    def peers(self) -> list[Peer]:
        return list(self._peers.values())

    async def close_peer(self, peer_id: str, reason: CloseReason = CloseReason.REQUESTED) -> None:
        await self.peer(peer_id).close(reason)

    def peer_closed(self, peer: Peer, reason: CloseReason) -> None:
        if self._peers.get(peer.id) is peer:
            del self._peers[peer.id]
            self.emit(PeerClosed(self.id, peer.id, reason))

    # -- producers ------------------------------------------------------------------------
    def producers(self) -> list[ProducerInfo]:
        return [p.info() for p in self._producers.values()]

    def get_producer(self, producer_id: str) -> Producer:
        producer = self._producers.get(producer_id)
        if producer is None:
            raise NotFoundError(f"no producer {producer_id} in router {self.id}")
        return producer

    def pause_producer(self, producer_id: str) -> None:
        """Chair mute: stop forwarding; the client cannot undo it."""
        producer = self.get_producer(producer_id)
        if producer.pause():
            self._forget_speaker(producer)
            self.emit(ProducerPaused(self.id, producer.peer_id, producer.id, True))

    def resume_producer(self, producer_id: str) -> None:
        producer = self.get_producer(producer_id)
        if producer.resume(time.monotonic()):
            self.emit(ProducerPaused(self.id, producer.peer_id, producer.id, False))

    def close_producer(self, producer_id: str) -> None:
        self.get_producer(producer_id).close(CloseReason.REQUESTED)

    def producer_added(self, producer: Producer) -> None:
        self._producers[producer.id] = producer
        self.emit(ProducerAdded(self.id, producer.info()))

    def producer_closed(self, producer: Producer, reason: CloseReason) -> None:
        if self._producers.pop(producer.id, None) is None:
            return
        self._forget_speaker(producer)
        self.emit(ProducerClosed(self.id, producer.peer_id, producer.id, producer.kind,
                                 producer.source, reason))

    # -- active speaker ----------------------------------------------------------------------
    @property
    def active_speaker(self) -> str | None:
        """Producer id of the current active speaker."""
        return self._speaker.current

    def audio_level(self, producer: Producer, level: int, now: float) -> None:
        speaker = self._speaker
        if producer.paused:
            return
        speaker.add(producer.id, level, now)
        if speaker.due(now):
            change = speaker.evaluate(now)
            if change is not None:
                self._emit_speaker(change.producer_id, change.level_dbov)

    def _forget_speaker(self, producer: Producer) -> None:
        self._speaker.remove(producer.id)
        if self._speaker.current == producer.id:
            self._speaker.current = None
            self._emit_speaker(None, None)

    def _emit_speaker(self, producer_id: str | None, level: int | None) -> None:
        producer = self._producers.get(producer_id) if producer_id else None
        self.emit(ActiveSpeakerChanged(self.id, producer.peer_id if producer else None,
                                       producer_id if producer else None, level))

    # -- events, stats, lifecycle -----------------------------------------------------------------
    def add_listener(self, listener: Listener) -> Any:
        """Events of this router only; returns a remover."""
        return self._bus.add_listener(listener)

    def emit(self, event: MediaEvent) -> None:
        self._bus.emit(event)

    def stats(self) -> RouterStats:
        current = self._producers.get(self._speaker.current or "")
        return RouterStats(id=self.id, peers=[p.stats() for p in self._peers.values()],
                           active_speaker_peer_id=current.peer_id if current else None)

    async def close(self) -> None:
        """Idempotent: closes every peer, then leaves the SFU."""
        await self._closing.run(self._close_peers)

    async def _close_peers(self) -> None:
        try:
            await asyncio.gather(*(p.close(CloseReason.ROUTER_CLOSED)
                                   for p in list(self._peers.values())))
        finally:
            self._sfu.router_closed(self)
