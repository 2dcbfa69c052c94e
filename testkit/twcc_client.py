"""Transport-wide congestion control feedback from an aiortc subscriber, as a browser sends
it (Chromium does; aiortc does not): the SFU's send-side estimate and its padding probes
(media/bwe.py, media/probe.py) then work with the test and bench subscribers.

`keep_transport_cc()` makes aiortc answer the extension (it parses it already, but answers
only the extensions it uses). `TwccFeedback(sub)` then records every RTP packet's
transport-wide sequence number as the subscriber's DTLS transport reads it, before routing
(padding-only RTX included, which aiortc's receiver then drops, as a browser's RTX stream
does), and sends the SFU's own feedback encoder's packets (media/twcc.TwccRecorder, what the
SFU sends its publishers) every 50 ms, libwebrtc's interval. Arrival times are the kernel's
receive times of the datagrams (SIOCGSTAMP, as the SFU's publisher feedback: a loop late to
read must not look like a queue; SFU and clients share one loaded process in tests), or, with
`rate_bps`, those of a modelled link (a rate and a 200 ms drop-tail queue; a packet the
queue would drop is reported lost) applied to them.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

from aiortc import RTCRtpHeaderExtensionParameters
from aiortc.codecs import HEADER_EXTENSIONS

from media import twcc
from media.rtp import EXT_TRANSPORT_CC
from media.transport import kernel_receive_time

from .aiortc_clients import Subscriber

INTERVAL_S = 0.05
QUEUE_S = 0.2  # the modelled link's drop-tail queue


def keep_transport_cc() -> Callable[[], None]:
    """Make aiortc answer transport-wide-cc on video (for this process); the undo."""
    video = HEADER_EXTENSIONS["video"]
    if any(e.uri == twcc.URI_TRANSPORT_CC for e in video):
        return lambda: None
    HEADER_EXTENSIONS["video"] = [*video, RTCRtpHeaderExtensionParameters(
        id=EXT_TRANSPORT_CC, uri=twcc.URI_TRANSPORT_CC)]

    def undo() -> None:
        HEADER_EXTENSIONS["video"] = video
    return undo


class _Raw:
    """Bytes aiortc's receiver sends as an RTCP packet."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __bytes__(self) -> bytes:
        return self.data


def rtp_transport_seq(data: bytes) -> int | None:
    """The transport-wide sequence number of a (decrypted) RTP packet, or None."""
    if len(data) < 12 or not data[0] & 0x10:
        return None
    pos = 12 + 4 * (data[0] & 0x0F)
    if len(data) < pos + 4:
        return None
    profile, words = struct.unpack_from("!HH", data, pos)
    ext = data[pos + 4:pos + 4 + 4 * words]
    return twcc.transport_seq(profile, ext, EXT_TRANSPORT_CC)


class TwccFeedback:
    """A subscriber's transport-wide feedback (the module's docstring)."""

    def __init__(self, sub: Subscriber, rate_bps: float | None = None) -> None:
        self.rate_bps = rate_bps  # a modelled link (None: the real arrivals)
        self.numbered = 0
        self.dropped = 0  # by the modelled queue
        self.kernel_stamps = 0  # arrivals timed by the kernel (the others: the loop's)
        self._busy = 0.0
        self._recorder = twcc.TwccRecorder(origin=time.time())
        # the transport is bundled: any receiver's; RTCP goes out through the first video's
        self._receiver = next(t.receiver for t in sub.pc.getTransceivers()
                              if t.kind == "video")
        dtls = self._receiver.transport
        ice = dtls.transport
        connection = ice._connection
        self._timeval = array.array("q", (0, 0))
        self._stamps: dict[int, float] = {}  # id(datagram) -> kernel receive time
        self._arrival: float | None = None  # the datagram being handled's
        data_received: Callable[[bytes, int], None] = connection.data_received

        def stamped(data: bytes, component: int) -> None:
            pair = connection._nominated.get(component)
            sock = None if pair is None else pair.protocol.transport.get_extra_info("socket")
            if sock is not None:
                self._stamps[id(data)] = kernel_receive_time(sock.fileno(), self._timeval)
            data_received(data, component)

        recv: Callable[[], Awaitable[bytes]] = ice._recv

        async def received() -> bytes:
            data = await recv()
            self._arrival = self._stamps.pop(id(data), None)
            if len(self._stamps) > 1000:  # never read (closing): forget
                self._stamps.clear()
            return data

        handle: Callable[[bytes, int], Awaitable[None]] = dtls._handle_rtp_data

        async def numbered(data: bytes, arrival_time_ms: int) -> None:
            seq = rtp_transport_seq(data)
            if seq is not None:
                at = self._arrival
                if at is None:
                    at = time.time()
                else:
                    self.kernel_stamps += 1
                self._arrive(seq, len(data), struct.unpack_from("!I", data, 8)[0], at)
            await handle(data, arrival_time_ms)

        setattr(connection, "data_received", stamped)  # noqa: B010 (methods, wrapped)
        setattr(ice, "_recv", received)  # noqa: B010
        setattr(dtls, "_handle_rtp_data", numbered)  # noqa: B010
        self._task = asyncio.ensure_future(self._run())

    def _arrive(self, seq: int, size: int, ssrc: int, at: float) -> None:
        self.numbered += 1
        if self.rate_bps is not None:
            start = max(at, self._busy)
            if start - at > QUEUE_S:
                self.dropped += 1  # the queue is full: reported lost
                return
            self._busy = at = start + (size + 28) * 8 / self.rate_bps
        self._recorder.record(seq, at, ssrc)

    async def send(self, packet: bytes) -> None:
        await self._receiver._send_rtcp(cast(Any, _Raw(packet)))

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(INTERVAL_S)
            for packet in self._recorder.feedback(0x1234):
                with contextlib.suppress(ConnectionError):
                    await self.send(packet)

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
