"""Enums and small value objects shared by the media package."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Kind(str, enum.Enum):
    AUDIO = "audio"
    VIDEO = "video"


class Source(str, enum.Enum):
    """What a producer carries; the client names it when publishing."""

    MIC = "mic"
    CAMERA = "camera"
    SCREEN = "screen"
    SCREEN_AUDIO = "screen-audio"

    @classmethod
    def default_for(cls, kind: Kind) -> Source:
        return cls.MIC if kind is Kind.AUDIO else cls.CAMERA


class Direction(str, enum.Enum):
    """Direction of a transport, seen from the client (mediasoup wording)."""

    SEND = "send"  # client -> server: the client offers, the server answers
    RECV = "recv"  # server -> client: the server offers, the client answers


class TransportState(str, enum.Enum):
    NEW = "new"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    FAILED = "failed"
    CLOSED = "closed"


class CloseReason(str, enum.Enum):
    REQUESTED = "requested"  # the server asked for it
    PEER_CLOSED = "peer-closed"
    PRODUCER_CLOSED = "producer-closed"
    UNPUBLISHED = "unpublished"  # the client stopped sending the track
    REJECTED = "rejected"  # the client rejected the m-section in its answer
    ICE_TIMEOUT = "ice-timeout"
    TRANSPORT_FAILED = "transport-failed"
    TRANSPORT_CLOSED = "transport-closed"
    SLOW_CONSUMER = "slow-consumer"
    ROUTER_CLOSED = "router-closed"


@dataclass(frozen=True)
class CodecInfo:
    """A negotiated codec: what the server forwards for one producer."""

    mime_type: str  # "audio/opus", "video/VP8", "video/H264"
    clock_rate: int
    channels: int | None = None
    parameters: tuple[tuple[str, str], ...] = ()  # fmtp, sorted, as strings
    rtcp_feedback: tuple[tuple[str, str | None], ...] = ()

    @property
    def name(self) -> str:
        return self.mime_type.split("/")[1].upper()

    @property
    def kind(self) -> Kind:
        return Kind(self.mime_type.split("/")[0].lower())

    def fmtp(self) -> dict[str, Any]:
        return dict(self.parameters)


@dataclass(frozen=True)
class ProducerInfo:
    """What the server tells clients about a producer (no internals)."""

    id: str
    peer_id: str
    kind: Kind
    source: Source
    codec: str
    paused: bool
    app_data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProducerOrigin:
    """Identity a producer keeps when it is relayed from another node (cascade):
    the origin producer's id and publisher, so ids are the same on every node."""

    id: str
    peer_id: str
    app_data: dict[str, Any] = field(default_factory=dict)
    # A simulcast origin relays each layer on its own m-section: that section's layer (its
    # rid) and the origin's rids, low to high. The sections of one origin make one producer.
    rids: tuple[str, ...] = ()
    rid: str | None = None


@dataclass(frozen=True)
class ConsumerInfo:
    """Maps an m-section of a server offer to what it carries."""

    id: str
    mid: str
    producer_id: str
    producer_peer_id: str
    kind: Kind
    source: Source
    stream_id: str  # msid stream id: one per (peer, camera|screen) for lip sync


@dataclass(frozen=True)
class ServerOffer:
    """An offer for the client's receive transport (server -> client media)."""

    sdp: str
    consumers: list[ConsumerInfo]


@dataclass(frozen=True)
class PublishResult:
    """The answer to a client's send-transport offer."""

    sdp: str
    added: list[ProducerInfo]
    removed: list[str]  # producer ids closed because the client stopped sending
