"""Hopso media: a selective forwarding unit on aiortc that never decodes.

The server wires this to its signaling; nothing here knows about HTTP,
socket.io or databases. See docs/media.md.

This package's exports are the seam between the server and the SFU (docs/media.md,
"The server's seam"): server/ imports ``from media import ...`` only, never a submodule
(tests/media/test_seam.py checks it). Room logic sees routers, peers and their events;
node links see `Cascade`/`LinkEnd` and the link's transport as `SFU.link_transport()`.
"""

from .allocator import Want
from .bwe import HistoryStats
from .closing import CloseOnce
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
    DownlinkChanged,
    EventBus,
    MediaEvent,
    PeerClosed,
    ProducerAdded,
    ProducerClosed,
    ProducerPaused,
    RenegotiationNeeded,
    TransportStateChanged,
)
from .layers import ConsumerLayers
from .link import MAX_CATALOG, MAX_IDS, Cascade, LinkEnd, LinkLimits, relayed
from .link_transport import LinkTransport
from .link_usage import link_usage
from .peer import Peer, Subscription
from .probe import ProbeStats
from .producer import Producer
from .ratelimit import TokenBucket
from .recorder import Recorder, TrackFile
from .router import Router
from .rtx_budget import RtxStats
from .sfu import SFU
from .stats import ConsumerStats, LayerStats, PeerStats, ProducerStats, RouterStats, TransportStats
from .subscribing import SignalingState
from .twcc import UplinkStats
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
    "MAX_CATALOG",
    "MAX_IDS",
    "SFU",
    "ActiveSpeakerChanged",
    "Cascade",
    "CloseOnce",
    "CloseReason",
    "ClosedError",
    "ConfigError",
    "Consumer",
    "ConsumerClosed",
    "ConsumerInfo",
    "ConsumerLayers",
    "ConsumerStats",
    "Direction",
    "DownlinkChanged",
    "EventBus",
    "HistoryStats",
    "IceServer",
    "Kind",
    "LayerStats",
    "LimitError",
    "LinkEnd",
    "LinkLimits",
    "LinkTransport",
    "MediaConfig",
    "MediaError",
    "MediaEvent",
    "NegotiationError",
    "NotFoundError",
    "Peer",
    "PeerClosed",
    "PeerStats",
    "ProbeStats",
    "Producer",
    "ProducerAdded",
    "ProducerClosed",
    "ProducerInfo",
    "ProducerPaused",
    "ProducerStats",
    "PublishResult",
    "Recorder",
    "RenegotiationNeeded",
    "Router",
    "RouterStats",
    "RtxStats",
    "SdpError",
    "ServerOffer",
    "SignalingState",
    "Source",
    "Subscription",
    "TokenBucket",
    "TrackFile",
    "TransportState",
    "TransportStateChanged",
    "TransportStats",
    "UnsupportedCodecError",
    "UplinkStats",
    "Want",
    "link_usage",
    "relayed",
]
