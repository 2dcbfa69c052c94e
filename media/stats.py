"""Plain statistics records (the server maps them to its API and Prometheus)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


class RateMeter:
    """Bit rate from a byte counter, sampled on the RTCP tick (not per packet)."""

    __slots__ = ("_last_bytes", "_last_time", "bps")

    def __init__(self) -> None:
        self.bps = 0
        self._last_bytes = 0
        self._last_time: float | None = None

    def sample(self, total_bytes: int, now: float) -> None:
        if self._last_time is not None and now > self._last_time:
            self.bps = int((total_bytes - self._last_bytes) * 8 / (now - self._last_time))
        self._last_bytes = total_bytes
        self._last_time = now


@dataclass
class TransportStats:
    direction: str
    state: str
    packets_sent: int
    bytes_sent: int
    packets_received: int
    bytes_received: int
    bitrate_out_bps: int
    bitrate_in_bps: int
    packets_dropped: int  # slow consumer: send buffer over the bound
    send_buffer_bytes: int


@dataclass
class LayerStats:
    """One spatial layer (rid) of a simulcast producer, or the one stream of another."""

    index: int  # 0 = lowest
    rid: str | None
    ssrc: int | None  # None: announced, not bound to an SSRC yet
    rtx_ssrc: int | None
    active: bool  # packets arrived in the last 1.5 s
    packets_received: int
    bitrate_bps: int
    packets_lost: int
    keyframes_received: int
    keyframe_requests_sent: int
    consumers: int  # forwarding it or waiting for its keyframe


@dataclass
class ProducerStats:
    id: str
    peer_id: str
    kind: str
    source: str
    codec: str
    paused: bool
    ssrc: int | None
    packets_received: int
    bytes_received: int
    bitrate_bps: int
    packets_lost: int
    fraction_lost: float  # over the last report interval, 0..1
    jitter_ms: float
    rtx_received: int  # retransmissions received (recovered or late)
    packets_recovered: int
    nacks_sent: int
    keyframe_requests_sent: int
    keyframe_requests_suppressed: int  # rate limited
    keyframes_received: int
    remb_sent_bps: int | None
    consumers: int
    rtt_ms: float | None = None  # not measured upstream (no SR from us)
    layers: list[LayerStats] = field(default_factory=list)  # simulcast: low to high
    # Publisher faults, counted and otherwise ignored (docs/media.md, Simulcast):
    unknown_rid_packets: int = 0  # a rid the offer did not announce
    unbound_packets: int = 0  # an SSRC without a known route nor a usable rid/mid
    ssrc_changes: int = 0  # a layer (or the stream) rebound to a new SSRC mid-call
    layers_never_sent: int = 0  # announced layers with no packet 5 s after the first one


@dataclass
class ConsumerStats:
    id: str
    peer_id: str
    producer_id: str
    kind: str
    ssrc: int
    active: bool
    paused: bool
    packets_sent: int
    bytes_sent: int
    bitrate_bps: int
    packets_dropped: int  # not sent: slow transport, waiting for a keyframe...
    retransmissions_sent: int
    nacks_received: int
    keyframe_requests_received: int
    packets_lost: int  # as reported by the subscriber
    fraction_lost: float
    jitter_ms: float
    rtt_ms: float | None
    remb_bps: int | None
    # Simulcast (None for a single-layer producer): the layer forwarded, the one wanted.
    current_layer: int | None = None
    target_layer: int | None = None
    preferred_layer: int | None = None
    layer_switches: int = 0
    # VP8 temporal layers (simulcast VP8; None otherwise): pictures of TID <= current are
    # sent, target is where it goes (3: every layer); packets of pictures dropped for it.
    current_temporal: int | None = None
    target_temporal: int | None = None
    temporal_dropped: int = 0
    # NACKed packets not resent (over the transport's budget, or resent less than a round trip
    # ago: media/rtx_budget.py); the subscriber's PLI/FIR not passed on (within 1 s of one).
    retransmissions_refused: int = 0
    keyframe_requests_suppressed: int = 0


@dataclass
class PeerStats:
    id: str
    transports: list[TransportStats] = field(default_factory=list)
    producers: list[ProducerStats] = field(default_factory=list)
    consumers: list[ConsumerStats] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RouterStats:
    id: str
    peers: list[PeerStats]
    active_speaker_peer_id: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
