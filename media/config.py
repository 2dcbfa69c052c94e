"""Configuration of the SFU."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError


@dataclass(frozen=True)
class IceServer:
    """A STUN/TURN server handed to clients (the server itself never uses it)."""

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Shape of the browser's RTCIceServer dictionary."""
        out: dict[str, Any] = {"urls": list(self.urls)}
        if self.username is not None:
            out["username"] = self.username
        if self.credential is not None:
            out["credential"] = self.credential
        return out


@dataclass(frozen=True)
class MediaConfig:
    # Local IPs to gather host candidates on. Explicit because aioice's own
    # enumeration skips loopback and would expose every interface.
    ice_addresses: tuple[str, ...]
    # IP written into candidates instead of the bound one (1:1 NAT, Docker).
    announced_address: str | None = None
    # For clients only; the server never contacts STUN/TURN.
    ice_servers: tuple[IceServer, ...] = ()
    # Upper bound for the REMB sent to every video publisher of a meeting.
    max_bitrate_bps: int = 2_500_000
    # A transport that has not connected (ICE + DTLS) by then is failed.
    ice_timeout_s: float = 20.0
    # Time span of the per-producer packet history used to answer NACKs.
    video_history_s: float = 1.0
    # At most one keyframe request per producer per interval.
    keyframe_interval_s: float = 0.5
    # Interval of receiver/sender reports and REMB.
    rtcp_interval_s: float = 1.0
    # Active speaker: evaluation window, loudness threshold (dBov magnitude,
    # 0 = loudest, 127 = silence) and windows a new speaker must win in a row.
    speaker_interval_s: float = 0.3
    speaker_threshold_dbov: int = 70
    speaker_hold_windows: int = 2
    # Slow consumer: drop packets while the socket's user-space send buffer is
    # above this, close the peer if it stays above for this long.
    send_buffer_limit_bytes: int = 512 * 1024
    slow_consumer_timeout_s: float = 5.0
    # Bounds on signaling input.
    max_sdp_bytes: int = 64 * 1024
    max_media_sections: int = 32
    # Preferred video codec order when a publisher offers several.
    video_codecs: tuple[str, ...] = ("VP8", "H264")
    # Share each subscriber's downlink estimate (REMB) out among its consumers
    # (media/allocator.py): layers per subscriber, audio only below a floor.
    bandwidth_allocation: bool = False
    # For this long after a subscriber's first estimate nothing is paused and video never
    # goes off (media/allocator.py, start-up grace): a just-joined browser's first REMB is
    # low and climbs from there. Tests shorten it; 0: no grace.
    allocation_startup_grace_s: float = 10.0
    # Answer a publisher's transport-wide-cc offer (video) and send it transport-wide feedback
    # every twcc_interval_s (media/twcc.py): its own sender (GCC) then adapts to its uplink.
    transport_cc: bool = True
    twcc_interval_s: float = 0.05
    # Offer transport-wide-cc to subscribers (video), number every video packet sent to them
    # and estimate each one's downlink here from their feedback (media/bwe.py, GCC): the
    # estimate replaces their REMB as the allocator's input. Off: REMB as before.
    subscriber_transport_cc: bool = False

    def __post_init__(self) -> None:
        # Accept lists from callers but store tuples: the config is shared.
        for name in ("ice_addresses", "ice_servers", "video_codecs"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        if not self.ice_addresses:
            raise ConfigError("ice_addresses must list at least one local IP")
        for address in self.ice_addresses + (
            (self.announced_address,) if self.announced_address else ()
        ):
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise ConfigError(f"not an IP address: {address!r}") from None
        for name in ("ice_timeout_s", "video_history_s", "keyframe_interval_s",
                     "rtcp_interval_s", "speaker_interval_s", "slow_consumer_timeout_s",
                     "twcc_interval_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive")
        if self.allocation_startup_grace_s < 0:
            raise ConfigError("allocation_startup_grace_s must not be negative")
        if self.max_bitrate_bps < 30_000:
            raise ConfigError("max_bitrate_bps must be at least 30000")
        unknown = {c.upper() for c in self.video_codecs} - {"VP8", "H264"}
        if unknown or not self.video_codecs:
            raise ConfigError(f"video_codecs must be VP8 and/or H264, got {self.video_codecs}")

    def client_ice_servers(self) -> list[dict[str, Any]]:
        """The iceServers list to put in the browser's RTCConfiguration."""
        return [server.to_json() for server in self.ice_servers]
