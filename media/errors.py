"""Named errors. Everything the package raises on bad input is a MediaError."""


class MediaError(Exception):
    """Base class for media errors."""


class ConfigError(MediaError, ValueError):
    """MediaConfig is invalid."""


class SdpError(MediaError, ValueError):
    """A session description is malformed or breaks a rule we rely on."""


class RtcpError(MediaError, ValueError):
    """An RTCP packet the SFU cannot read (the packet is dropped)."""


class UnsupportedCodecError(SdpError):
    """No codec in an m-section is one we forward (Opus, VP8, H.264 mode 1)."""


class NegotiationError(MediaError):
    """An offer/answer arrived in the wrong signaling state or does not match."""


class LimitError(MediaError):
    """A request would exceed a limit of MediaConfig (e.g. max_media_sections)."""


class NotFoundError(MediaError, KeyError):
    """An unknown router, peer, producer or consumer id."""

    def __str__(self) -> str:  # KeyError quotes its message; we don't want that
        return str(self.args[0]) if self.args else ""


class ClosedError(MediaError):
    """The object was closed."""
