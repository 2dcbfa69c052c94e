"""The conference's bounds, its SFU configuration from Settings, and how SFU errors
become acknowledgement codes (docs/protocol.md, "Media": `limits` and error codes)."""

from __future__ import annotations

from media import (
    ClosedError,
    IceServer,
    MediaConfig,
    MediaError,
    NegotiationError,
    NotFoundError,
    SdpError,
    UnsupportedCodecError,
)
from rooms.errors import DomainError
from server.core.settings import Settings

# Bounds on what one connection may ask for.
MAX_PEERS_PER_USER = 4  # devices one person may have in a meeting's media
MAX_SUBSCRIBE_IDS = 64  # producer ids in one media:subscribe
MAX_ACTIVE_CONSUMERS = 96  # consumers a peer holds at once
# No lifetime cap any more: closed consumers' m-sections are recycled (media/subscribing.py).
SUBSCRIBE_BURST, SUBSCRIBE_PER_S = 10.0, 2.0  # token bucket per peer
MAX_SDP_BYTES = 192 * 1024
# m-sections of one SDP: a recv offer holds the live consumers plus closed ones whose
# rejection the client has not answered yet (reused after that), so room for twice the
# live cap; more makes media:subscribe fail with too_many.
MAX_MEDIA_SECTIONS = 2 * MAX_ACTIVE_CONSUMERS + 8


class MediaFailure(DomainError):
    """A media operation that cannot be done; its code names why (see MEDIA_ERROR_CODES)."""

    code, status = "media_error", 409


MEDIA_ERROR_CODES: tuple[tuple[type[MediaError], str], ...] = (
    (UnsupportedCodecError, "unsupported_codec"),  # before SdpError, its base
    (SdpError, "bad_sdp"),
    (NegotiationError, "negotiation"),
    (NotFoundError, "not_found"),
    (ClosedError, "closed"),
    (MediaError, "media_error"),
)


def media_failure(exc: MediaError) -> MediaFailure:
    """The error ack for an SFU error: a stable code and the SFU's message."""
    code = next(c for kind, c in MEDIA_ERROR_CODES if isinstance(exc, kind))
    return MediaFailure(str(exc) or type(exc).__name__, code=code)


def media_config(settings: Settings) -> MediaConfig:
    """MediaConfig from Settings (tests shorten the timings: Settings.media_timings)."""
    return MediaConfig(
        ice_addresses=tuple(settings.ice_addresses),
        announced_address=settings.announced_address,
        ice_servers=tuple(IceServer((url,)) for url in settings.ice_servers),
        ice_timeout_s=settings.media_timings.ice_timeout_s,
        rtcp_interval_s=settings.media_timings.rtcp_interval_s,
        max_sdp_bytes=MAX_SDP_BYTES,
        max_media_sections=MAX_MEDIA_SECTIONS,
        bandwidth_allocation=settings.bandwidth_allocation,
        subscriber_transport_cc=settings.subscriber_transport_cc,
    )
