"""SRTP protection of outgoing packets through pylibsrtp's C binding.

pylibsrtp's `Session.protect` allocates and checks on every call (a new
`int *`, a type check, a copy into its buffer and one out). Forwarding pays
that once per packet per subscriber, so each transport leg has an `SrtpOut`:
the 12-byte RTP header is packed into a reused C buffer and the forwarded
tail copied after it, then libsrtp's `srtp_protect` runs in place on the
context of the DTLS transport's own session, and one `bytes` comes out.

This is the only module that touches pylibsrtp internals (`PRIVATE_ATTRIBUTES`
and `C_SIGNATURES`, asserted by tests/media/test_srtp.py, which also checks
the output byte for byte against `Session.protect`). It refuses to import
with anything but pylibsrtp 1.0.x.
"""

from __future__ import annotations

import logging
import struct
import threading
from typing import Any

import pylibsrtp
from pylibsrtp import Session, _binding  # _binding: the cffi module (ffi + lib)

SUPPORTED_PYLIBSRTP = "1.0."

if not pylibsrtp.__version__.startswith(SUPPORTED_PYLIBSRTP):  # pragma: no cover
    raise ImportError(
        f"media.srtp supports pylibsrtp {SUPPORTED_PYLIBSRTP}x, found {pylibsrtp.__version__}; "
        "re-check PRIVATE_ATTRIBUTES/C_SIGNATURES and run tests/media/test_srtp.py")

# (owner, attribute): every non-public name this module relies on.
PRIVATE_ATTRIBUTES: tuple[tuple[str, str], ...] = (
    ("pylibsrtp", "_binding"),  # .ffi and .lib
    ("pylibsrtp.Session instance", "_srtp"),  # srtp_t *, freed by ffi.gc with the Session
)
# The C functions called, with the cffi type they must keep (libsrtp 2.x API:
# in place, length in/out through int *; libsrtp 3 changed both).
C_SIGNATURES: dict[str, str] = {
    "srtp_protect": "srtp_err_status_t(*)(struct srtp_ctx_t_ *, void *, int *)",
    "srtp_protect_rtcp": "srtp_err_status_t(*)(struct srtp_ctx_t_ *, void *, int *)",
    "srtp_unprotect": "srtp_err_status_t(*)(struct srtp_ctx_t_ *, void *, int *)",
    "srtp_unprotect_rtcp": "srtp_err_status_t(*)(struct srtp_ctx_t_ *, void *, int *)",
}

logger = logging.getLogger(__name__)

_ffi: Any = _binding.ffi
_lib: Any = _binding.lib
_srtp_protect = _lib.srtp_protect
_srtp_protect_rtcp = _lib.srtp_protect_rtcp
_srtp_unprotect = _lib.srtp_unprotect
_srtp_unprotect_rtcp = _lib.srtp_unprotect_rtcp
_pack_header = struct.Struct("!BBHII").pack_into

# For the C fan-out (media/fanout.py), which calls srtp_protect through this pointer.
PROTECT_ADDRESS: int = int(_ffi.cast("uintptr_t", _ffi.addressof(_lib, "srtp_protect")))

BUFFER_SIZE = 2048
# What protect may append: SRTCP index + auth tag + MKI (pylibsrtp's bound).
MAX_TRAILER = pylibsrtp.SRTP_MAX_SRTCP_TRAILER_LEN
MAX_PACKET = BUFFER_SIZE - MAX_TRAILER


_local = threading.local()


def _thread_buffer() -> tuple[Any, Any, Any]:
    """(unsigned char[BUFFER_SIZE], its ffi.buffer, int *) of the calling thread."""
    shared = getattr(_local, "buffer", None)
    if shared is None:
        cdata = _ffi.new("unsigned char[]", BUFFER_SIZE)
        shared = _local.buffer = (cdata, _ffi.buffer(cdata), _ffi.new("int *"))
    return shared


class _InPlace:
    """libsrtp on one session's context, in place in the thread's C buffer."""

    __slots__ = ("_buffer", "_cdata", "_ctx", "_length", "_session", "errors")

    def __init__(self, session: Session) -> None:
        self._session = session  # owns the libsrtp context: keep it alive
        self._ctx = session._srtp[0]
        self._cdata, self._buffer, self._length = _thread_buffer()
        self.errors = 0

    @property
    def context_address(self) -> int:
        """Address of the libsrtp context (valid while this object lives)."""
        return int(_ffi.cast("uintptr_t", self._ctx))

    def _process(self, packet: bytes, func: Any, name: str) -> bytes | None:
        end = len(packet)
        if end > MAX_PACKET:
            self._fail("packet too long")
            return None
        buffer = self._buffer
        buffer[0:end] = packet
        length = self._length
        length[0] = end
        if func(self._ctx, self._cdata, length):
            self._fail(f"{name} failed")
            return None
        return buffer[0:length[0]]

    def _fail(self, what: str) -> None:
        self.errors += 1
        if self.errors == 1:
            logger.warning("SRTP: %s; dropping (further drops only counted)", what)


class SrtpIn(_InPlace):
    """Unprotects one transport's incoming SRTP/SRTCP (its DTLS session's
    receive context). A packet libsrtp refuses (bad tag, replay) gives None."""

    __slots__ = ()

    def unprotect(self, packet: bytes) -> bytes | None:
        return self._process(packet, _srtp_unprotect, "srtp_unprotect")

    def unprotect_rtcp(self, packet: bytes) -> bytes | None:
        return self._process(packet, _srtp_unprotect_rtcp, "srtp_unprotect_rtcp")

    def _fail(self, what: str) -> None:
        self.errors += 1  # a replayed or damaged packet: normal on a network, only counted


class SrtpOut(_InPlace):
    """Protects one leg's outgoing RTP/RTCP in place in a reused C buffer.

    Every method returns a new `bytes` before the buffer is used again, so
    all legs of a thread share one buffer (cffi releases the GIL around
    libsrtp calls, hence one per thread): a fan-out to N subscribers then
    writes the same cache lines N times instead of N buffers. Use an SrtpOut
    on the thread that created it (the transport's event loop). A packet
    libsrtp refuses, or one longer than `MAX_PACKET`, gives None (counted in
    `errors`).
    """

    __slots__ = ()

    def rtp(self, b0: int, b1: int, seq: int, ts: int, ssrc: int, tail: bytes) -> bytes | None:
        """SRTP of the 12-byte header (b0, b1, seq, ts, ssrc) followed by `tail`."""
        end = 12 + len(tail)
        if end > MAX_PACKET:
            self._fail("packet too long")
            return None
        buffer = self._buffer
        _pack_header(buffer, 0, b0, b1, seq, ts, ssrc)
        buffer[12:end] = tail
        length = self._length
        length[0] = end
        if _srtp_protect(self._ctx, self._cdata, length):
            self._fail("srtp_protect failed")
            return None
        return buffer[0:length[0]]

    def protect(self, packet: bytes) -> bytes | None:
        """SRTP of a whole RTP packet."""
        return self._process(packet, _srtp_protect, "srtp_protect")

    def protect_rtcp(self, packet: bytes) -> bytes | None:
        """SRTCP of a (compound) RTCP packet."""
        return self._process(packet, _srtp_protect_rtcp, "srtp_protect_rtcp")
