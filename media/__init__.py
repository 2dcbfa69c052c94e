"""Hopso media: a selective forwarding unit on aiortc that never decodes.

The server wires this to its signaling; nothing here knows about HTTP,
socket.io or databases. See docs/media.md.
"""

from .config import IceServer, MediaConfig
from .consumer import Consumer
from .errors import (
    ClosedError,
    ConfigError,
    LimitError,
    MediaError,
    NegotiationError,
    NotFoundError,
    SdpError,
    UnsupportedCodecError,
)
from .events import (
    ActiveSpeakerChanged,
    ConsumerClosed,
    EventBus,
    MediaEvent,
    PeerClosed,
    ProducerAdded,
    ProducerClosed,
    ProducerPaused,
    RenegotiationNeeded,
    TransportStateChanged,
)
from .peer import Peer, Subscription
from .producer import Producer
from .router import Router
from .sfu import SFU
from .stats import ConsumerStats, PeerStats, ProducerStats, RouterStats, TransportStats
from .subscribing import SignalingState
from .types import (
    CloseReason,
    ConsumerInfo,
    Direction,
    Kind,
    ProducerInfo,
    PublishResult,
    ServerOffer,
    Source,
    TransportState,
)

__all__ = [
    "SFU",
    "ActiveSpeakerChanged",
    "CloseReason",
    "ClosedError",
    "ConfigError",
    "Consumer",
    "ConsumerClosed",
    "ConsumerInfo",
    "ConsumerStats",
    "Direction",
    "EventBus",
    "IceServer",
    "Kind",
    "LimitError",
    "MediaConfig",
    "MediaError",
    "MediaEvent",
    "NegotiationError",
    "NotFoundError",
    "Peer",
    "PeerClosed",
    "PeerStats",
    "Producer",
    "ProducerAdded",
    "ProducerClosed",
    "ProducerInfo",
    "ProducerPaused",
    "ProducerStats",
    "PublishResult",
    "RenegotiationNeeded",
    "Router",
    "RouterStats",
    "SdpError",
    "ServerOffer",
    "SignalingState",
    "Source",
    "Subscription",
    "TransportState",
    "TransportStateChanged",
    "TransportStats",
    "UnsupportedCodecError",
]
