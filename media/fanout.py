"""Fan-out: one producer's packets to every consumer, in one C call.

The per-leg state the hot path needs lives in C structs (media/fanout_build.py
declares them): a `LegPath` per transport (socket, peer address, SRTP
context, counters) and a leg per consumer (its `StreamRewriter` state, SSRC,
payload type, counters). `FanOut` hands a batch of packets (those its
publisher's socket delivered in one go) and the producer's array of legs to
`hop_forward`, which forwards them to every leg it can and returns the
others (restart at a keyframe, no path or SRTP yet, a transport whose
packets a test intercepts) for the Python path, `Consumer.send`, which
reads and writes the same structs. Without the compiled module (not built)
every leg takes the Python path.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .srtp import PROTECT_ADDRESS

if TYPE_CHECKING:
    from .consumer import Consumer
    from .rtp import ForwardPacket

logger = logging.getLogger(__name__)

ffi: Any
lib: Any
try:
    from ._fanout_c import ffi, lib  # type: ignore[import-not-found, no-redef]
except ImportError:  # pragma: no cover - setup.sh always builds it
    import cffi

    from .fanout_build import CDEF  # parses the C declarations: only without the build

    ffi = cffi.FFI()
    ffi.cdef(CDEF)
    lib = None
    logger.warning("media._fanout_c is not built (pip install -e . builds it): every "
                   "packet takes the slower Python path")

COMPILED = lib is not None
MAX_BATCH = 32  # HOP_MAX_BATCH in media/fanout_build.py: packets of one source per call
RUNS = 32  # HOP_RUNS: runs of dropped packets (temporal layers) a leg remembers
ALL_TEMPORAL = 3  # a temporal target / current layer that drops nothing (TID is 2 bits)
_PROTECT = ffi.cast("void *", PROTECT_ADDRESS)


def new_leg() -> Any:
    """A zeroed `hop_leg *` (epoch -1: restart at the first packet; every temporal layer)."""
    leg = ffi.new("hop_leg *")
    leg.epoch = -1
    leg.last_time = -1.0
    leg.tid_target = leg.tid_current = ALL_TEMPORAL
    leg.in_pid = -1
    return leg


T = TypeVar("T", int, bool)


class LegField(Generic[T]):
    """An attribute of an object with a `leg`, stored in that C struct."""

    def __init__(self, field: str, kind: type[T]) -> None:
        self.field = field
        self.kind: type[T] = kind

    def __get__(self, obj: Any, owner: Any = None) -> T:
        return self.kind(getattr(obj.leg, self.field))

    def __set__(self, obj: Any, value: T) -> None:
        setattr(obj.leg, self.field, int(value))


def sockaddr(addr: tuple[str, int]) -> bytes:
    """struct sockaddr_in / sockaddr_in6 of an (ip, port) pair."""
    host, port = addr[0], addr[1]
    if ":" in host:
        return (struct.pack("=H", socket.AF_INET6) + struct.pack("!HI", port, 0)
                + socket.inet_pton(socket.AF_INET6, host) + struct.pack("=I", 0))
    return (struct.pack("=H", socket.AF_INET) + struct.pack("!H", port)
            + socket.inet_pton(socket.AF_INET, host) + bytes(8))


TWCC_RING = 4096  # HOP_TWCC: packets whose send time and size a transport remembers


def new_twcc(ext_id: int) -> Any:
    """A zeroed `hop_twcc *` numbering with extension id `ext_id` (media/bwe.py)."""
    if not 1 <= ext_id <= 14:
        raise ValueError(f"one-byte extension id out of range: {ext_id}")
    twcc = ffi.new("hop_twcc *")
    twcc.id = ext_id
    return twcc


def twcc_number(twcc: Any, now: float, size: int) -> int:
    """The next transport-wide sequence number, recorded as a packet of `size` bytes (RTP)
    sent at `now` (what the C loop records); its element's bytes are `twcc_element`'s."""
    number = int(twcc.next)
    twcc.next = (number + 1) & 0xFFFFFFFF
    slot = number % TWCC_RING
    twcc.time[slot] = now
    twcc.size[slot] = size
    return number


def twcc_element(twcc: Any, number: int) -> bytes:
    """The one-byte extension element carrying `number`, padded to a word."""
    return bytes(((twcc.id << 4) | 1, (number >> 8) & 0xFF, number & 0xFF, 0))


def twcc_tail(tail: bytes, twcc: Any, now: float) -> bytes:
    """`tail` (the producer's one-word extension block + payload) with the next transport-wide
    sequence number after its element, recorded as sent at `now`: what the C loop writes."""
    number = twcc_number(twcc, now, 16 + len(tail))
    return b"\xbe\xde\x00\x02" + tail[4:8] + twcc_element(twcc, number) + tail[8:]


PADDING_MAX = 255  # an RTP packet's padding length is one byte, itself included


def padding_packet(pt: int, seq: int, ts: int, ssrc: int, padding: int, twcc: Any,
                   now: float) -> bytes:
    """A padding-only RTP packet (P bit, no payload: RFC 3550 5.1) of `padding` bytes
    (1..PADDING_MAX) carrying the next transport-wide sequence number: a bandwidth probe's
    filler (media/probe.py), sent on an RTX SSRC as libwebrtc's pacer does; a receiver's
    RTX stream drops it (no original sequence number) after its transport-wide feedback
    has counted it."""
    if not 1 <= padding <= PADDING_MAX:
        raise ValueError(f"padding out of range: {padding}")
    number = twcc_number(twcc, now, 20 + padding)
    return (struct.pack("!BBHII", 0xB0, pt & 0x7F, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc)
            + b"\xbe\xde\x00\x01" + twcc_element(twcc, number)
            + bytes(padding - 1) + bytes((padding,)))


class LegPath:
    """A transport's side of the C path: its socket, peer address and SRTP.

    The socket is a dup of the nominated one, so the fd the C loop writes to
    can never be closed and reused under it; `clear()` closes the dup.
    """

    def __init__(self) -> None:
        self.cdata = ffi.new("hop_path *")
        self.cdata.fd = -1
        self.enabled = True  # False: every leg takes the Python path
        self._fd = -1
        self._srtp = 0
        self.twcc: Any = None  # the hop_twcc its video legs number on (None: not numbered)

    def set_twcc(self, ext_id: int | None) -> None:
        """Number the packets of legs with `twcc` set (transport-cc negotiated), or stop."""
        self.twcc = None if ext_id is None else new_twcc(ext_id)
        self.cdata.twcc = ffi.NULL if self.twcc is None else self.twcc

    def set_socket(self, fd: int, addr: tuple[str, int]) -> None:
        self.clear()
        raw = sockaddr(addr)
        self._fd = os.dup(fd)
        path = self.cdata
        ffi.memmove(path.addr, raw, len(raw))
        path.addrlen = len(raw)
        self._apply()

    def set_srtp(self, context_address: int) -> None:
        """The libsrtp context to protect with (0: none)."""
        self._srtp = context_address
        self._apply()

    def set_enabled(self, enabled: bool) -> None:
        self.enabled = enabled
        self._apply()

    def clear(self) -> None:
        """No socket: legs take the Python path (which then drops)."""
        self.cdata.fd = -1
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _apply(self) -> None:
        path = self.cdata
        ready = self.enabled and self._fd >= 0 and self._srtp
        path.fd = self._fd if ready else -1
        path.srtp = ffi.cast("void *", self._srtp)

    def unblock_if_idle(self, now: float, quiet_s: float) -> float | None:
        """Seconds the socket has been refusing packets (None: not blocked);
        forgets a block with no refusal in the last `quiet_s`."""
        path = self.cdata
        if path.blocked_since == 0.0:
            return None
        if now - path.blocked_last > quiet_s:
            path.blocked_since = path.blocked_last = 0.0
            return None
        return float(now - path.blocked_since)


class FanOut:
    """A producer's consumers and the C array of their legs.

    Packets forwarded while their transport drains what it read from the
    socket in one go (`batch` is then that transport's list) wait and go out
    together when it ends (`flush`): per leg one `sendmmsg` of the batch.
    """

    def __init__(self) -> None:
        self.consumers: list[Consumer] = []
        self._legs: Any = ffi.new("hop_leg *[]", 0)
        self._slow: Any = ffi.new("int[]", 0)
        self._pending: list[ForwardPacket] = []

    def set(self, consumers: Sequence[Consumer]) -> None:
        self.consumers = list(consumers)
        self._legs = ffi.new("hop_leg *[]", [c.leg for c in self.consumers])
        self._slow = ffi.new("int[]", len(self.consumers))

    def forward(self, fp: ForwardPacket, now: float, batch: list[FanOut] | None = None) -> None:
        if batch is None or lib is None:
            self._send([fp], now)
            return
        if not self._pending:
            batch.append(self)
        self._pending.append(fp)
        if len(self._pending) == MAX_BATCH:
            self.flush(now)  # stays listed in batch: a later flush finds nothing or more

    def flush(self, now: float) -> None:
        packets, self._pending = self._pending, []
        if packets:
            self._send(packets, now)

    def _send(self, packets: list[ForwardPacket], now: float) -> None:
        consumers = self.consumers
        if lib is None:
            for consumer in consumers:
                for fp in packets:
                    consumer.send(fp, now)
            return
        array = ffi.new("hop_packet[]", len(packets))
        tails = [ffi.from_buffer(fp.tail) for fp in packets]  # alive until the call returns
        for c, fp, tail in zip(array, packets, tails, strict=True):
            c.ext, c.ts, c.marker, c.epoch = fp.ext_seq, fp.ts, fp.marker, fp.epoch
            c.tail, c.tail_len, c.payload_size = tail, len(fp.tail), fp.payload_size
            vp8 = fp.vp8
            if vp8 is not None:  # simulcast VP8 only: the C loop rewrites its ids per leg
                c.pid, c.pid_pos, c.pid_wide, c.tl0, c.tl0_pos, c.tid, c.sync = vp8
        slow = self._slow
        count = lib.hop_forward(_PROTECT, self._legs, len(consumers), array, len(packets), now,
                                slow)
        for i in range(count):
            consumer = consumers[slow[i]]
            for fp in packets:
                consumer.send(fp, now)
