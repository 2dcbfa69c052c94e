"""A lightweight WebRTC endpoint for bench/sfu.py: the publisher here, the subscriber in
sfu_subscriber.py, the SDP they read in sfu_sdp.py.

Why not aiortc's RTCPeerConnection for the load: a subscriber RTCPeerConnection
parses every packet into objects, runs a jitter buffer and a decoder thread;
150 of them would saturate the load core long before the server under test.
This endpoint keeps the parts that matter to a server and skips the rest:

* ICE with aioice (the server's checks are answered, consent freshness runs),
  gathered on exactly one address (checked), no STUN/TURN.
* DTLS with aiortc's RTCDtlsTransport (real handshake, SRTP keys exported);
  SRTP/SRTCP with pylibsrtp through that transport's sessions. Every received
  packet is authenticated and decrypted, every sent one protected.
* After DTLS is up, datagrams are read straight from the socket with
  ``recvmsg`` and the kernel receive timestamp (SO_TIMESTAMPNS); STUN and
  DTLS still go to aioice/aiortc. That timestamp is taken when the server's
  sendto() lands in our socket, so it is the server's egress time, not the
  time our busy event loop got round to the packet.
* Subscribers count at the RTP level: packets and sequence gaps per SSRC
  (loss), VP8 frames (distinct timestamps carrying the marker bit) and
  keyframes (payload descriptor S=1, PID=0, P=0). Nothing is decoded. They
  send RTCP receiver reports (with LSR/DLSR) and a REMB about once a second,
  like a browser. They do not send NACKs, so the loss reported is what the
  server delivered, not what a retransmission later repaired.
* The publisher sends a pre-encoded clip (see sfu_media): VP8 packetized per
  RFC 7741 with a 15-bit picture id, Opus with the audio-level extension,
  abs-send-time and mid extensions, sender reports; it answers NACKs with
  RTX from a 1 s history and PLI/FIR by restarting the clip at its keyframe.
  It remembers when it sent each payload (a table keyed by payload bytes),
  so a subscriber can compute publisher sendto() -> kernel arrival for every
  forwarded packet whose payload the server did not change.

aiortc and aioice internals are reached only through media/aiortc_seam.py (its DTLS
transport with plain callbacks, the DTLS role, the SRTP sessions and profile, the nominated
pair). Private names used here: the event loop's _add_reader/_remove_reader (the public
ones refuse a socket owned by a transport).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import random
import secrets
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

import pylibsrtp
from aioice import Connection
from aiortc import RTCCertificate, RTCDtlsParameters
from aiortc.rtp import (
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
)
from sfu_media import FPS, Clip
from sfu_sdp import RemoteTransport, UnsafeAddress, parse_sdp, remote_transport

from media import aiortc_seam

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
RTP_HEADER = struct.Struct("!BBHII")
TIMESPEC = struct.Struct("qq")
URI_AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
URI_ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
URI_MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
WANTED_EXTENSIONS = (URI_AUDIO_LEVEL, URI_ABS_SEND_TIME, URI_MID)
WANTED_FEEDBACK = ("nack", "nack pli", "ccm fir", "goog-remb")
MAX_PAYLOAD = 1200
KEYFRAME_MIN_INTERVAL = 0.1  # at most one keyframe per 100 ms (3 frames), like a browser
CERTIFICATE: RTCCertificate | None = None


def certificate() -> RTCCertificate:
    global CERTIFICATE
    if CERTIFICATE is None:
        CERTIFICATE = RTCCertificate.generateCertificate()
    return CERTIFICATE


# --- transport ------------------------------------------------------------------

class _IceAdapter:
    """What RTCDtlsTransport uses of an RTCIceTransport."""

    def __init__(self, conn: Connection, controlling: bool) -> None:
        self.conn = conn
        self.role = "controlling" if controlling else "controlled"

    async def _recv(self) -> bytes:
        return await self.conn.recv()

    async def _send(self, data: bytes) -> None:
        await self.conn.send(data)


class Endpoint:
    """ICE + DTLS + SRTP on one UDP socket, bound to one address."""

    def __init__(self, address: str, controlling: bool) -> None:
        self.address = address
        self.controlling = controlling
        self.conn = Connection(ice_controlling=controlling, components=1, use_ipv6=False)
        self.ice = _IceAdapter(self.conn, controlling)
        # Its callbacks only see packets before the fast path is installed (first after DTLS).
        self.dtls = aiortc_seam.SeamDtlsTransport(
            self.ice, certificate(), lambda data: self.on_rtp(data, time.time_ns()),
            lambda data: self.on_rtcp(data))
        self._sock: socket.socket | None = None
        self._send_transport: Any = None
        self._remote_addr: tuple[str, int] | None = None
        self._protect: Callable[[bytes], bytes] | None = None
        self._protect_rtcp: Callable[[bytes], bytes] | None = None
        self._unprotect: Callable[[bytes], bytes] | None = None
        self._unprotect_rtcp: Callable[[bytes], bytes] | None = None
        self._proto: Any = None
        self._fd: int | None = None
        self.srtp_errors = 0
        self.srtp_profile = ""
        self.connected = False
        self.closed = False

    async def gather(self) -> None:
        await self.conn.gather_candidates()
        for c in self.conn.local_candidates:
            if c.host != self.address:
                raise UnsafeAddress(f"gathered {c.host}, expected only {self.address}")
        if not self.conn.local_candidates:
            raise RuntimeError(f"could not gather a candidate on {self.address}")

    def sdp_transport_lines(self, setup: str) -> list[str]:
        lines = [f"a=ice-ufrag:{self.conn.local_username}",
                 f"a=ice-pwd:{self.conn.local_password}"]
        for fp in certificate().getFingerprints():
            if fp.algorithm != "sha-256":
                continue  # one is enough; Janus warns about the others
            lines.append(f"a=fingerprint:{fp.algorithm} {fp.value}")
        lines.append(f"a=setup:{setup}")
        for c in self.conn.local_candidates:
            lines.append(f"a=candidate:{c.to_sdp()}")
        lines.append("a=end-of-candidates")
        return lines

    async def connect(self, remote: RemoteTransport, dtls_role: str) -> None:
        """ICE checks, then the DTLS handshake; raises on failure."""
        self.conn.remote_username = remote.ufrag
        self.conn.remote_password = remote.pwd
        for c in remote.candidates:
            await self.conn.add_remote_candidate(c)
        await self.conn.add_remote_candidate(None)
        await self.conn.connect()
        nominated = aiortc_seam.nominated_socket(self.conn)
        protocol = aiortc_seam.nominated_protocol(self.conn)
        if nominated is None or protocol is None:
            raise ConnectionError("ICE nominated nothing")
        transport, remote_addr = nominated
        if remote_addr[0] != remote.candidates[0].host:
            raise UnsafeAddress(f"ICE nominated {remote_addr}")
        aiortc_seam.set_dtls_role(self.dtls, dtls_role)
        await self.dtls.start(RTCDtlsParameters(fingerprints=remote.fingerprints))
        if self.dtls.state != "connected":
            raise ConnectionError(f"DTLS {self.dtls.state}")
        self.srtp_profile = aiortc_seam.srtp_profile(self.dtls)
        tx, rx = aiortc_seam.srtp_tx_session(self.dtls), aiortc_seam.srtp_rx_session(self.dtls)
        self._protect, self._protect_rtcp = tx.protect, tx.protect_rtcp
        self._unprotect, self._unprotect_rtcp = rx.unprotect, rx.unprotect_rtcp
        self._proto = protocol
        self._send_transport = transport
        self._remote_addr = remote_addr
        self._install_fast_path()
        self.connected = True

    def _install_fast_path(self) -> None:
        loop = asyncio.get_running_loop()
        fd = self._send_transport.get_extra_info("socket").fileno()
        sock = socket.socket(fileno=os.dup(fd))
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self._sock, self._fd = sock, fd
        loop._remove_reader(fd)  # type: ignore[attr-defined]
        loop._add_reader(fd, self._read_ready)  # type: ignore[attr-defined]

    def _read_ready(self) -> None:
        sock = self._sock
        if sock is None:
            return
        recvmsg = sock.recvmsg
        unpack = TIMESPEC.unpack_from
        for _ in range(64):
            try:
                data, anc, _flags, addr = recvmsg(2048, 64)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if anc:
                sec, nsec = unpack(anc[0][2])
                ts = sec * 1_000_000_000 + nsec
            else:
                ts = time.time_ns()
            if not data:
                continue
            b0 = data[0]
            if 127 < b0 < 192:
                b1 = data[1]
                try:
                    if 192 <= b1 <= 208:
                        self.on_rtcp(self._unprotect_rtcp(data))  # type: ignore[misc]
                    else:
                        self.on_rtp(self._unprotect(data), ts)  # type: ignore[misc]
                except pylibsrtp.Error:
                    self.srtp_errors += 1
            else:
                self._proto.datagram_received(data, addr)  # STUN, DTLS

    def send_rtp(self, packet: bytes) -> int:
        """Protect and send; returns the send time (time.time_ns())."""
        data = self._protect(packet)  # type: ignore[misc]
        t = time.time_ns()
        self._send_transport.sendto(data, self._remote_addr)
        return t

    def send_rtcp(self, packet: bytes) -> None:
        if self._protect_rtcp is None or self.closed:
            return
        self._send_transport.sendto(self._protect_rtcp(packet), self._remote_addr)

    # overridden
    def on_rtp(self, data: bytes, ts_ns: int) -> None:
        pass

    def on_rtcp(self, data: bytes) -> None:
        pass

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.connected = False
        self._protect = self._protect_rtcp = None
        # Teardown of a benchmark peer: best effort.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.dtls.stop(), 2)
        if self._fd is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop()._remove_reader(self._fd)  # type: ignore[attr-defined]
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.conn.close(), 2)
        if self._sock is not None:
            self._sock.close()
            self._sock = None


# --- RTCP helpers ------------------------------------------------------------------

def ntp_now() -> int:
    t = time.time() + 2208988800
    return (int(t) << 32) | int((t % 1) * (1 << 32))


def rtcp_header(count: int, pt: int, length_words: int) -> bytes:
    return struct.pack("!BBH", 0x80 | count, pt, length_words)


def build_sr(ssrc: int, ntp: int, rtp_ts: int, packets: int, octets: int) -> bytes:
    return rtcp_header(0, 200, 6) + struct.pack("!IIIIII", ssrc, ntp >> 32, ntp & 0xFFFFFFFF,
                                                 rtp_ts & 0xFFFFFFFF, packets & 0xFFFFFFFF,
                                                 octets & 0xFFFFFFFF)


def build_remb(sender: int, bitrate: int, ssrcs: list[int]) -> bytes:
    exp = 0
    mantissa = bitrate
    while mantissa > 0x3FFFF:
        mantissa >>= 1
        exp += 1
    body = struct.pack("!II4sBBH", sender, 0, b"REMB", len(ssrcs),
                       (exp << 2) | (mantissa >> 16), mantissa & 0xFFFF)
    body += b"".join(struct.pack("!I", s) for s in ssrcs)
    return struct.pack("!BBH", 0x80 | 15, 206, len(body) // 4) + body


# --- publisher ------------------------------------------------------------------------

PT_OPUS, PT_VP8, PT_RTX = 111, 96, 97
EXT_LEVEL, EXT_AST, EXT_MID = 1, 2, 4


class SideTable:
    """When each payload was sent (ns), for the last few seconds."""

    def __init__(self, horizon_s: float = 3.0) -> None:
        self.sent: dict[bytes, int] = {}
        self._order: collections.deque[tuple[int, bytes]] = collections.deque()
        self._horizon = int(horizon_s * 1e9)
        self.ambiguous = 0

    def add(self, payload: bytes, t: int) -> None:
        if payload in self.sent:
            self.ambiguous += 1
            self.sent[payload] = 0  # two sends of the same bytes: unusable
        else:
            self.sent[payload] = t
        self._order.append((t, payload))
        limit = t - self._horizon
        order = self._order
        while order and order[0][0] < limit:
            _, old = order.popleft()
            self.sent.pop(old, None)


def _ext_block(elements: list[tuple[int, bytes]]) -> bytes:
    body = b"".join(bytes(((i << 4) | (len(v) - 1),)) + v for i, v in elements)
    body += b"\x00" * (-len(body) % 4)
    return struct.pack("!HH", 0xBEDE, len(body) // 4) + body


class Publisher(Endpoint):
    """Sends the clip: VP8 ~1 Mbps at 30 fps and Opus 20 ms, in real time."""

    def __init__(self, address: str, clip: Clip) -> None:
        super().__init__(address, controlling=True)
        self.clip = clip
        self.audio_ssrc = random.randint(1, 0xFFFFFFFF)
        self.video_ssrc = random.randint(1, 0xFFFFFFFF)
        self.rtx_ssrc = random.randint(1, 0xFFFFFFFF)
        self.cname = secrets.token_hex(8)
        self.side = SideTable()
        self.ext_ids: dict[str, int] = {}
        self._frames = [self._split(f) for f in clip.vp8]
        self._history: dict[int, bytes] = {}
        self._history_order: collections.deque[int] = collections.deque()
        self._seq = {self.audio_ssrc: random.randint(0, 0x7FFF),
                     self.video_ssrc: random.randint(0, 0x7FFF)}
        self._rtx_seq = random.randint(0, 0x7FFF)
        self._ts0 = {self.audio_ssrc: random.getrandbits(32), self.video_ssrc: random.getrandbits(32)}
        self._counts = {self.audio_ssrc: [0, 0], self.video_ssrc: [0, 0]}  # packets, octets
        self._picture_id = random.randint(0, 0x7FFF)
        self._clip_index = 0
        self._keyframe_wanted = False
        self._last_keyframe = 0.0
        self._t0 = 0.0
        self._task: asyncio.Task[None] | None = None
        self._rtcp_task: asyncio.Task[None] | None = None
        # statistics
        self.video_frames_sent = 0
        self.audio_packets_sent = 0
        self.packets_sent = 0
        self.keyframes_sent = 0
        self.keyframe_requests = 0
        self.nacks = 0
        self.retransmissions = 0
        self.late_ticks = 0
        self.active = True  # False: keep time but send no media (another server is measured)

    @staticmethod
    def _split(frame: bytes) -> list[bytes]:
        room = MAX_PAYLOAD - 4
        count = max(1, -(-len(frame) // room))
        size = -(-len(frame) // count)
        return [frame[i:i + size] for i in range(0, len(frame), size)]

    def offer(self) -> str:
        ts = self.sdp_transport_lines("actpass")
        lines = ["v=0", f"o=- {random.getrandbits(40)} 2 IN IP4 127.0.0.1", "s=-", "t=0 0",
                 "a=group:BUNDLE 0 1", "a=msid-semantic: WMS bench"]
        lines += [f"m=audio 9 UDP/TLS/RTP/SAVPF {PT_OPUS}", "c=IN IP4 0.0.0.0",
                  "a=rtcp:9 IN IP4 0.0.0.0", *ts, "a=mid:0",
                  f"a=extmap:{EXT_LEVEL} {URI_AUDIO_LEVEL}", f"a=extmap:{EXT_MID} {URI_MID}",
                  "a=sendonly", "a=msid:bench atrack", "a=rtcp-mux",
                  f"a=rtpmap:{PT_OPUS} opus/48000/2",
                  f"a=fmtp:{PT_OPUS} minptime=10;useinbandfec=1",
                  f"a=ssrc:{self.audio_ssrc} cname:{self.cname}",
                  f"a=ssrc:{self.audio_ssrc} msid:bench atrack"]
        lines += [f"m=video 9 UDP/TLS/RTP/SAVPF {PT_VP8} {PT_RTX}", "c=IN IP4 0.0.0.0",
                  "a=rtcp:9 IN IP4 0.0.0.0", *ts, "a=mid:1",
                  f"a=extmap:{EXT_AST} {URI_ABS_SEND_TIME}", f"a=extmap:{EXT_MID} {URI_MID}",
                  "a=sendonly", "a=msid:bench vtrack", "a=rtcp-mux",
                  f"a=rtpmap:{PT_VP8} VP8/90000",
                  f"a=rtcp-fb:{PT_VP8} goog-remb", f"a=rtcp-fb:{PT_VP8} ccm fir",
                  f"a=rtcp-fb:{PT_VP8} nack", f"a=rtcp-fb:{PT_VP8} nack pli",
                  f"a=rtpmap:{PT_RTX} rtx/90000", f"a=fmtp:{PT_RTX} apt={PT_VP8}",
                  f"a=ssrc-group:FID {self.video_ssrc} {self.rtx_ssrc}",
                  f"a=ssrc:{self.video_ssrc} cname:{self.cname}",
                  f"a=ssrc:{self.video_ssrc} msid:bench vtrack",
                  f"a=ssrc:{self.rtx_ssrc} cname:{self.cname}",
                  f"a=ssrc:{self.rtx_ssrc} msid:bench vtrack"]
        return "\r\n".join(lines) + "\r\n"

    async def apply_answer(self, answer: str, expected_address: str) -> None:
        sdp = parse_sdp(answer)
        remote = remote_transport(sdp, expected_address)
        for section in sdp.media:
            if section.port == 0:
                raise RuntimeError(f"server rejected the publisher's {section.kind}")
            pts = section.rtpmap()
            want = PT_OPUS if section.kind == "audio" else PT_VP8
            if want not in pts:
                raise RuntimeError(f"server answered {section.kind} without PT {want}: {pts}")
            for uri, ident in section.extmaps().items():
                self.ext_ids[uri] = ident
        role = "server" if remote.setup == "active" else "client"
        await self.connect(remote, role)

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._task = asyncio.ensure_future(self._run())
        self._rtcp_task = asyncio.ensure_future(self._run_rtcp())

    # -- media --------------------------------------------------------------------
    async def _run(self) -> None:
        audio_next = video_next = self._t0
        audio_n = video_n = 0
        audio_dt, video_dt = 0.02, 1 / FPS
        clip = self.clip
        while not self.closed:
            now = time.monotonic()
            if now - min(audio_next, video_next) > 0.2:  # stalled: do not burst
                self.late_ticks += 1
                audio_n += int((now - audio_next) / audio_dt)
                video_n += int((now - video_next) / video_dt)
                audio_next = self._t0 + audio_n * audio_dt
                video_next = self._t0 + video_n * video_dt
            if now >= audio_next:
                index = audio_n % len(clip.opus)
                if self.active:
                    self._send_audio(clip.opus[index], clip.levels[index],
                                     self._ts0[self.audio_ssrc] + audio_n * 960)
                audio_n += 1
                audio_next = self._t0 + audio_n * audio_dt
            if now >= video_next:
                if self.active:
                    self._send_video(self._ts0[self.video_ssrc] + video_n * 3000, now)
                video_n += 1
                video_next = self._t0 + video_n * video_dt
            delay = min(audio_next, video_next) - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)

    def _header(self, ssrc: int, pt: int, marker: bool, ts: int) -> bytes:
        seq = self._seq[ssrc]
        self._seq[ssrc] = (seq + 1) & 0xFFFF
        return RTP_HEADER.pack(0x90, pt | (0x80 if marker else 0), seq, ts & 0xFFFFFFFF, ssrc)

    def _send(self, ssrc: int, header: bytes, ext: bytes, payload: bytes) -> None:
        packet = header + ext + payload
        t = self.send_rtp(packet)
        self.side.add(payload, t)
        counts = self._counts[ssrc]
        counts[0] += 1
        counts[1] += len(payload)
        self.packets_sent += 1
        if ssrc == self.video_ssrc:
            seq = (header[2] << 8) | header[3]
            self._history[seq] = packet
            self._history_order.append(seq)
            while len(self._history_order) > 512:
                self._history.pop(self._history_order.popleft(), None)

    def _send_audio(self, payload: bytes, level: int, ts: int) -> None:
        elements = []
        if (ident := self.ext_ids.get(URI_AUDIO_LEVEL)):
            elements.append((ident, bytes((0x80 | level,))))
        if (ident := self.ext_ids.get(URI_MID)):
            elements.append((ident, b"0"))
        self._send(self.audio_ssrc, self._header(self.audio_ssrc, PT_OPUS, False, ts),
                   _ext_block(elements), payload)
        self.audio_packets_sent += 1

    def _send_video(self, ts: int, now: float) -> None:
        if self._keyframe_wanted and now - self._last_keyframe >= KEYFRAME_MIN_INTERVAL:
            self._keyframe_wanted = False  # requests within the interval wait, not vanish
            self._clip_index = 0
        if self._clip_index >= len(self._frames):
            self._clip_index = 0
        if self._clip_index == 0:
            self.keyframes_sent += 1
            self._last_keyframe = now
        chunks = self._frames[self._clip_index]
        self._clip_index += 1
        pid = self._picture_id
        self._picture_id = (pid + 1) & 0x7FFF
        pid_bytes = bytes((0x80 | (pid >> 8), pid & 0xFF))
        elements = []
        if (ident := self.ext_ids.get(URI_ABS_SEND_TIME)):
            ast = int(time.time() * 262144) & 0xFFFFFF
            elements.append((ident, ast.to_bytes(3, "big")))
        if (ident := self.ext_ids.get(URI_MID)):
            elements.append((ident, b"1"))
        ext = _ext_block(elements)
        last = len(chunks) - 1
        for i, chunk in enumerate(chunks):
            descriptor = (b"\x90\x80" if i == 0 else b"\x80\x80") + pid_bytes
            self._send(self.video_ssrc, self._header(self.video_ssrc, PT_VP8, i == last, ts),
                       ext, descriptor + chunk)
        self.video_frames_sent += 1

    # -- RTCP -------------------------------------------------------------------------
    async def _run_rtcp(self) -> None:
        while not self.closed:
            await asyncio.sleep(0.5 + random.random())
            elapsed = time.monotonic() - self._t0
            ntp = ntp_now()
            data = b""
            for ssrc, rate in ((self.audio_ssrc, 48000), (self.video_ssrc, 90000)):
                packets, octets = self._counts[ssrc]
                data += build_sr(ssrc, ntp, self._ts0[ssrc] + int(elapsed * rate), packets, octets)
            cname = self.cname.encode()
            chunk = struct.pack("!IBB", self.video_ssrc, 1, len(cname)) + cname
            chunk += b"\x00" * (4 - len(chunk) % 4)
            data += rtcp_header(1, 202, len(chunk) // 4) + chunk
            self.send_rtcp(data)

    def on_rtcp(self, data: bytes) -> None:
        try:
            packets = RtcpPacket.parse(data)
        except ValueError:
            return
        for packet in packets:
            if isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
                self.keyframe_requests += 1
                self._keyframe_wanted = True
            elif isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
                self.nacks += 1
                for seq in packet.lost:
                    self._retransmit(seq)

    def _retransmit(self, seq: int) -> None:
        original = self._history.get(seq)
        if original is None:
            return
        b0 = original[0]
        pos = 12 + 4 * (b0 & 0x0F)
        ext_len = 4 + 4 * ((original[pos + 2] << 8) | original[pos + 3])
        header = RTP_HEADER.pack(0x90, PT_RTX | (original[1] & 0x80), self._rtx_seq,
                                 struct.unpack_from("!I", original, 4)[0], self.rtx_ssrc)
        self._rtx_seq = (self._rtx_seq + 1) & 0xFFFF
        payload = struct.pack("!H", seq) + original[pos + ext_len:]
        self.send_rtp(header + original[pos:pos + ext_len] + payload)
        self.retransmissions += 1

    async def close(self) -> None:
        for task in (self._task, self._rtcp_task):
            if task is not None:
                task.cancel()
        await super().close()
