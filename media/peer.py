"""Peer: one participant. Publishes on a send transport, consumes on a recv one.

Two transports per peer, as in mediasoup: on the *send* transport the client
offers and the server answers (publishing); on the *recv* transport the
server offers and the client answers (subscribing). Neither side ever has to
resolve offer glare, and each client RTCPeerConnection keeps one role. All
signaling methods are serialised by one lock per peer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aioice import Candidate

from .allocator import Allocation, AllocatorStats, Want
from .bwe import HistoryStats
from .closing import CloseOnce
from .consumer import Consumer
from .errors import ClosedError, MediaError, NegotiationError, SdpError
from .events import DownlinkChanged, TransportStateChanged
from .layers import ConsumerLayers
from .probe import ProbeStats
from .producer import Producer
from .publishing import Publishing
from .rtx_budget import RtxStats
from .stats import PeerStats
from .subscribing import SignalingState, Subscribing
from .transport import TransportHandler, WebRtcTransport
from .twcc import UplinkStats
from .types import (
    CloseReason,
    ConsumerInfo,
    Direction,
    ProducerOrigin,
    PublishResult,
    ServerOffer,
    Source,
    TransportState,
)

if TYPE_CHECKING:
    from .link_transport import LinkTransport
    from .router import Router

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Subscription:
    consumers: list[ConsumerInfo]
    offer: ServerOffer | None  # None: an offer is out; set_answer() returns the next


class Peer:
    def __init__(self, router: Router, peer_id: str, app_data: dict[str, Any]) -> None:
        self.id = peer_id
        self.app_data = app_data
        self.router = router
        self._lock = asyncio.Lock()
        self._closing = CloseOnce()
        self._close_task: asyncio.Future[None] | None = None
        self._publishing = Publishing(self)
        self._subscribing = Subscribing(self)
        # A cascade link peer: both halves use the node link's one transport.
        self.link_transport: LinkTransport | None = None

    # -- properties ------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closing.started

    @property
    def producers(self) -> list[Producer]:
        return list(self._publishing.producers.values())

    @property
    def consumers(self) -> list[Consumer]:
        return list(self._subscribing.consumers.values())

    def transport(self, direction: Direction) -> WebRtcTransport | None:
        side = self._publishing if direction is Direction.SEND else self._subscribing
        return side.transport

    @property
    def transports(self) -> list[WebRtcTransport]:
        send, recv = self._publishing.transport, self._subscribing.transport
        return [t for t in (send, recv if recv is not send else None) if t]

    @property
    def signaling_state(self) -> SignalingState:
        """Of the receive transport (the send side is always stable for us)."""
        return self._subscribing.signaling

    # -- publishing ----------------------------------------------------------------------
    async def publish(self, offer_sdp: str,
                      sources: Mapping[str, Source | str] | None = None,
                      origins: Mapping[str, ProducerOrigin] | None = None) -> PublishResult:
        """Apply the client's send-transport offer; returns the answer.

        `sources` maps an m-section's mid to a Source (default: mic for audio,
        camera for video). New sending m-sections become producers; ones that
        stopped sending close theirs; a new ICE ufrag restarts ICE. On any
        error nothing changed. `origins` (by mid, for cascade links only) gives
        new producers the id and publisher of the producer they relay.
        """
        async with self._lock:
            self.check_open()
            return await self._publishing.publish(offer_sdp, sources or {}, origins or {})

    # -- subscribing ------------------------------------------------------------------------
    async def subscribe(self, *producer_ids: str, layers: bool = False) -> Subscription:
        """Consume producers; returns their consumers and the offer to send
        (None if an offer is out already). Subscribing twice is a no-op. `layers`
        (cascade links): a simulcast producer gets one consumer per layer, each pinned to
        its layer (`preferred_spatial`), so every layer crosses the link on its own SSRC."""
        async with self._lock:
            self.check_open()
            infos, offer = await self._subscribing.subscribe(producer_ids, layers)
            return Subscription(infos, offer)

    async def unsubscribe(self, consumer_id: str) -> ServerOffer | None:
        async with self._lock:
            self._subscribing.consumer(consumer_id).close(CloseReason.REQUESTED)
            return self._subscribing.offer()

    async def offer(self) -> ServerOffer | None:
        """A new offer if the receive transport changed and no offer is out."""
        async with self._lock:
            self.check_open()
            return self._subscribing.offer()

    async def set_answer(self, answer_sdp: str) -> ServerOffer | None:
        """Apply the client's answer; returns the next offer if more changed."""
        async with self._lock:
            self.check_open()
            return self._subscribing.set_answer(answer_sdp)

    async def restart_ice(self) -> ServerOffer | None:
        """Server-side ICE restart of the receive transport; returns the offer.
        The send transport restarts when the client offers a new ufrag."""
        async with self._lock:
            self.check_open()
            return await self._subscribing.restart_ice()

    def media_sections_needed(self, new_consumers: int = 0) -> int:
        """m-sections the receive SDP would have with `new_consumers` more consumers.
        A closed consumer's m-section is rejected, then reused once the client
        answered; subscribe() raises LimitError beyond config.max_media_sections."""
        return self._subscribing.sections_needed(new_consumers)

    def pause_consumer(self, consumer_id: str) -> None:
        """Stop sending one consumer (e.g. a hidden video tile)."""
        self._subscribing.consumer(consumer_id).pause()

    def resume_consumer(self, consumer_id: str) -> None:
        self._subscribing.consumer(consumer_id).resume()

    def set_preferred_layers(self, consumer_id: str, spatial: int | None,
                             temporal: int | None = None) -> ConsumerLayers:
        """The simulcast layer this consumer should get: spatial 0 = lowest, None = the
        highest the publisher sends (the default). The consumer moves there at that
        layer's next keyframe (asked for), or to the nearest lower layer sent. Harmless
        on a single-layer producer. Temporal: kept, not applied yet (docs/media.md)."""
        consumer = self._subscribing.consumer(consumer_id)
        return consumer.set_preferred_layers(spatial, temporal, time.monotonic())

    def set_wanted_layer(self, consumer_id: str, want: Want | str) -> None:
        """What the client's tile needs ("high", "low", "off"): a cap the bandwidth
        allocator applies on its next tick (media/allocator.py; needs
        config.bandwidth_allocation). MediaError for anything else."""
        consumer = self._subscribing.consumer(consumer_id)
        try:
            self._subscribing.wants[consumer.id] = Want(want)
        except ValueError:
            raise MediaError(f"want is 'high', 'low' or 'off', not {want!r}") from None

    def wanted_layer(self, consumer_id: str) -> Want:
        consumer = self._subscribing.consumer(consumer_id)
        return self._subscribing.wants.get(consumer.id, Want.HIGH)

    def downlink(self) -> Allocation | None:
        """The last bandwidth allocation of the recv transport (None before the first)."""
        return self._subscribing.allocation

    def uplink_stats(self) -> UplinkStats:
        """Transport-wide feedback to this publisher (docs/media.md, "Publisher uplink"):
        packets recorded, reports sent, sequence numbers ignored or skipped."""
        twcc = self._publishing.twcc
        return twcc.stats() if twcc is not None else UplinkStats()

    def downlink_feedback_stats(self) -> HistoryStats:
        """Transport-wide feedback from this subscriber (MediaConfig.subscriber_transport_cc,
        docs/media.md "Bandwidth allocation"): packets numbered, feedback read, packets
        reported, sequence numbers unknown, feedback refused (malformed or huge)."""
        return self._subscribing.feedback_stats()

    def downlink_probe_stats(self) -> ProbeStats:
        """Padding probes on this subscriber's downlink (media/probe.py): clusters started,
        lifted the estimate, failed, abandoned, padding bytes."""
        return self._subscribing.probe_stats()

    def retransmission_stats(self) -> RtxStats:
        """NACKs from this subscriber: packets resent, refused over its transport's budget or
        as repeats within a round trip (media/rtx_budget.py); cumulative."""
        return self._subscribing.retransmission_stats()

    def downlink_stats(self) -> AllocatorStats:
        """The allocator's cumulative counters: absurd REMB refused, feedback gone missing,
        falls to audio only."""
        return self._subscribing.allocator.stats

    def bandwidth_changed(self, allocation: Allocation) -> None:
        self.router.emit(DownlinkChanged(self.router.id, self.id, allocation.video_off,
                                         allocation.estimate_bps))

    def consumer_layers(self, consumer_id: str) -> ConsumerLayers:
        return self._subscribing.consumer(consumer_id).layers()

    async def add_ice_candidate(self, direction: Direction | str,
                                candidate: str | None) -> None:
        """A trickled remote candidate ("candidate:..." line) or None for the end."""
        transport = self.transport(Direction(direction))
        if transport is None:
            raise NegotiationError(f"no {Direction(direction).value} transport yet")
        parsed: Candidate | None = None
        if candidate:
            line = candidate.removeprefix("a=").removeprefix("candidate:")
            try:
                parsed = Candidate.from_sdp(line)
            except Exception as exc:  # noqa: BLE001 - aioice raises several kinds
                raise SdpError(f"malformed ICE candidate: {exc}") from None
            if (parsed.component != 1 or parsed.transport.lower() != "udp"
                    or parsed.host.endswith(".local")
                    or parsed.type not in ("host", "srflx", "relay")):
                return  # unusable by the server; checks will reveal the address
        await transport.add_remote_candidate(parsed)

    # -- transports ---------------------------------------------------------------------------
    async def new_transport(self, direction: Direction,
                            handler: TransportHandler) -> WebRtcTransport:
        if self.link_transport is not None:
            half = self._publishing if direction is Direction.SEND else self._subscribing
            shared = await self.link_transport.attach(direction, half)
            if self.closed:
                self.link_transport.detach(half)
                raise ClosedError(f"peer {self.id} closed")
            return shared
        transport = WebRtcTransport(direction, self.router.config, self.router.certificate,
                                    handler)
        try:
            await transport.prepare()
        except BaseException:
            await transport.close()
            raise
        if self.closed:
            await transport.close()
            raise ClosedError(f"peer {self.id} closed")
        return transport

    def transport_state(self, transport: WebRtcTransport, state: TransportState,
                        reason: CloseReason | None) -> None:
        router = self.router
        router.emit(TransportStateChanged(router.id, self.id, transport.direction, state))
        if state in (TransportState.FAILED, TransportState.CLOSED) and not self.closed:
            # Not inline: we are inside the transport's own task.
            self._close_task = asyncio.ensure_future(
                self.close(reason or CloseReason.TRANSPORT_CLOSED))

    # -- lifecycle -------------------------------------------------------------------------------
    def check_open(self) -> None:
        if self.closed:
            raise ClosedError(f"peer {self.id} is closed")

    async def close(self, reason: CloseReason = CloseReason.REQUESTED) -> None:
        """Idempotent: closes consumers, producers (and so their consumers on
        other peers), then transports; emits PeerClosed last."""
        await self._closing.run(lambda: self._close_owned(reason))

    async def _close_owned(self, reason: CloseReason) -> None:
        try:
            self._subscribing.close_consumers(CloseReason.PEER_CLOSED)
            self._publishing.close_producers(CloseReason.PEER_CLOSED)
            if self.link_transport is not None:  # shared: only let go of it
                self.link_transport.detach(self._publishing)
                self.link_transport.detach(self._subscribing)
            else:
                for transport in self.transports:
                    await transport.close()
        finally:
            self.router.peer_closed(self, reason)

    def stats(self) -> PeerStats:
        return PeerStats(id=self.id, transports=[t.stats() for t in self.transports],
                         producers=[p.stats() for p in self.producers],
                         consumers=[c.stats() for c in self.consumers])
