"""The subscriber of bench/sfu_client.py: receives, counts and reports at the RTP level
(packets, sequence gaps, VP8 frames and keyframes; nothing decoded), with receiver reports
and a REMB about once a second, like a browser."""

from __future__ import annotations

import asyncio
import random
import struct
import time

from sfu_client import (
    URI_ABS_SEND_TIME,
    WANTED_EXTENSIONS,
    WANTED_FEEDBACK,
    Endpoint,
    SideTable,
    build_remb,
    rtcp_header,
)
from sfu_sdp import RemoteTransport, parse_sdp, remote_transport


class Stream:
    __slots__ = (
        "base",
        "expected_prior",
        "first_keyframe_at",
        "first_packet_at",
        "frames",
        "highest",
        "keyframes",
        "kind",
        "last_marker_ts",
        "lost_prior",
        "received",
        "ssrc",
    )

    def __init__(self, ssrc: int, kind: str) -> None:
        self.ssrc = ssrc
        self.kind = kind  # audio, video, rtx, unknown
        self.received = 0
        self.frames = 0
        self.keyframes = 0
        self.highest: int | None = None
        self.base: int | None = None
        self.last_marker_ts = -1
        self.expected_prior = 0
        self.lost_prior = 0
        self.first_packet_at: float | None = None
        self.first_keyframe_at: float | None = None


class Subscriber(Endpoint):
    """Receives, counts and reports; answers the server's offer."""

    def __init__(self, address: str, side: SideTable | None) -> None:
        super().__init__(address, controlling=False)
        self.side = side
        self.streams: dict[int, Stream] = {}
        self.kinds: dict[int, str] = {}  # payload type -> audio/video/rtx
        self.ast_id = 0  # abs-send-time id in the server's offer
        self.recording = False
        self.latencies: list[int] = []  # ns, publisher sendto -> our kernel timestamp
        self.ast_delays: list[int] = []  # units of 1/262144 s (abs-send-time -> arrival)
        self.rtcp_ssrc = random.randint(1, 0xFFFFFFFF)
        self._sr: dict[int, tuple[int, float]] = {}  # ssrc -> (LSR, arrival monotonic)
        self._rr_task: asyncio.Task[None] | None = None
        self.rr_sent = 0

    def answer(self, offer: str, expected_address: str) -> tuple[str, RemoteTransport]:
        sdp = parse_sdp(offer)
        remote = remote_transport(sdp, expected_address)
        lines = ["v=0", f"o=- {random.getrandbits(40)} 2 IN IP4 127.0.0.1", "s=-", "t=0 0"]
        body: list[str] = []
        bundle = []
        transport = self.sdp_transport_lines("active")
        for section in sdp.media:
            accept = (section.kind in ("audio", "video") and section.port != 0
                      and section.direction in ("sendonly", "sendrecv"))
            rtpmap = section.rtpmap()
            chosen = None
            if accept:
                name = "opus" if section.kind == "audio" else "vp8"
                chosen = next((pt for pt in (int(f) for f in section.fmts if f.isdigit())
                               if pt in rtpmap and rtpmap[pt][0].lower() == name), None)
            if chosen is None:
                body += [f"m={section.kind} 0 {section.proto} {' '.join(section.fmts)}",
                         "c=IN IP4 0.0.0.0"]
                if section.mid:
                    body.append(f"a=mid:{section.mid}")
                body.append("a=inactive")
                continue
            fmtp = section.fmtp()
            rtx = next((pt for pt, (n, _, _) in rtpmap.items() if n.lower() == "rtx"
                        and fmtp.get(pt, "").replace(" ", "") == f"apt={chosen}"), None)
            pts = [chosen] + ([rtx] if rtx is not None else [])
            self.kinds[chosen] = section.kind
            if rtx is not None:
                self.kinds[rtx] = "rtx"
            bundle.append(section.mid)
            body += [f"m={section.kind} 9 {section.proto} {' '.join(map(str, pts))}",
                     f"c=IN IP4 {self.address}", "a=rtcp:9 IN IP4 0.0.0.0", *transport,
                     f"a=mid:{section.mid}"]
            for uri, ident in section.extmaps().items():
                if uri in WANTED_EXTENSIONS:
                    body.append(f"a=extmap:{ident} {uri}")
                    if uri == URI_ABS_SEND_TIME:
                        self.ast_id = ident
            body += ["a=recvonly", "a=rtcp-mux"]
            for pt in pts:
                n, clock, channels = rtpmap[pt]
                body.append(f"a=rtpmap:{pt} {n}/{clock}" + (f"/{channels}" if channels else ""))
                if pt in fmtp:
                    body.append(f"a=fmtp:{pt} {fmtp[pt]}")
            for fb in section.feedback(chosen):
                if fb in WANTED_FEEDBACK:
                    body.append(f"a=rtcp-fb:{chosen} {fb}")
        lines.append("a=group:BUNDLE " + " ".join(bundle))
        lines.append("a=msid-semantic: WMS *")
        return "\r\n".join(lines + body) + "\r\n", remote

    async def connect_to(self, remote: RemoteTransport) -> None:
        role = "server" if remote.setup == "active" else "client"
        await self.connect(remote, role)
        self._rr_task = asyncio.ensure_future(self._run_rr())

    # -- receive path (hot) ----------------------------------------------------------
    def on_rtp(self, data: bytes, ts_ns: int) -> None:
        ssrc = (data[8] << 24) | (data[9] << 16) | (data[10] << 8) | data[11]
        st = self.streams.get(ssrc)
        if st is None:
            st = self.streams[ssrc] = Stream(ssrc, self.kinds.get(data[1] & 0x7F, "unknown"))
            st.first_packet_at = time.monotonic()
        seq = (data[2] << 8) | data[3]
        highest = st.highest
        if highest is None:
            st.base = st.highest = seq + 0x10000
        else:
            delta = (seq - highest) & 0xFFFF
            if delta < 0x8000:
                st.highest = highest + delta
        st.received += 1
        kind = st.kind
        if kind == "rtx" or kind == "unknown":
            return
        b0 = data[0]
        pos = 12 + 4 * (b0 & 0x0F)
        end = len(data)
        if b0 & 0x10:
            if kind == "video" and self.ast_id and self.recording:
                self._abs_send_time(data, pos, ts_ns)
            pos += 4 + 4 * ((data[pos + 2] << 8) | data[pos + 3])
        if b0 & 0x20:
            end -= data[-1]
        if kind == "video":
            if data[1] & 0x80:
                ts = (data[4] << 24) | (data[5] << 16) | (data[6] << 8) | data[7]
                if ts != st.last_marker_ts:
                    st.last_marker_ts = ts
                    st.frames += 1
            if pos < end and data[pos] & 0x10 and not data[pos] & 0x07 and _vp8_key(data, pos, end):
                st.keyframes += 1
                if st.first_keyframe_at is None:
                    st.first_keyframe_at = time.monotonic()
        if self.recording and self.side is not None:
            sent = self.side.sent.get(data[pos:end])
            if sent:
                self.latencies.append(ts_ns - sent)

    def _abs_send_time(self, data: bytes, pos: int, ts_ns: int) -> None:
        if (data[pos] << 8 | data[pos + 1]) != 0xBEDE:
            return
        i = pos + 4
        end = i + 4 * ((data[pos + 2] << 8) | data[pos + 3])
        while i < end:
            byte = data[i]
            if byte == 0:
                i += 1
                continue
            ident, size = byte >> 4, (byte & 0x0F) + 1
            if ident == self.ast_id and size == 3:
                value = (data[i + 1] << 16) | (data[i + 2] << 8) | data[i + 3]
                self.ast_delays.append((ts_ns, value))  # type: ignore[arg-type]
                return
            i += 1 + size

    def on_rtcp(self, data: bytes) -> None:
        pos = 0
        now = time.monotonic()
        while pos + 4 <= len(data):
            pt = data[pos + 1]
            length = (((data[pos + 2] << 8) | data[pos + 3]) + 1) * 4
            if pt == 200 and pos + 20 <= len(data):
                ssrc, msw, lsw = struct.unpack_from("!III", data, pos + 4)
                self._sr[ssrc] = (((msw & 0xFFFF) << 16) | (lsw >> 16), now)
            pos += length

    async def _run_rr(self) -> None:
        await asyncio.sleep(random.random())
        while not self.closed:
            self.send_report()
            await asyncio.sleep(0.75 + 0.5 * random.random())

    def send_report(self) -> None:
        blocks = b""
        count = 0
        media = []
        now = time.monotonic()
        for st in self.streams.values():
            if st.kind not in ("audio", "video") or st.highest is None or count >= 31:
                continue
            media.append(st.ssrc)
            expected = st.highest - st.base + 1  # type: ignore[operator]
            lost = max(0, expected - st.received)
            exp_int = expected - st.expected_prior
            lost_int = lost - st.lost_prior
            st.expected_prior, st.lost_prior = expected, lost
            fraction = 0 if exp_int <= 0 or lost_int <= 0 else min(255, (lost_int << 8) // exp_int)
            lsr, dlsr = 0, 0
            if (sr := self._sr.get(st.ssrc)) is not None:
                lsr, dlsr = sr[0], int((now - sr[1]) * 65536)
            blocks += struct.pack("!IIIIII", st.ssrc, (fraction << 24) | min(lost, 0x7FFFFF),
                                  (st.highest - 0x10000) & 0xFFFFFFFF, 0, lsr, dlsr)
            count += 1
        packet = rtcp_header(count, 201, 1 + 6 * count) + struct.pack("!I", self.rtcp_ssrc) + blocks
        if media:
            packet += build_remb(self.rtcp_ssrc, 2_500_000, media)
        self.send_rtcp(packet)
        self.rr_sent += 1

    def snapshot(self) -> dict[int, tuple[str, int, int, int, int]]:
        return {s.ssrc: (s.kind, s.received, s.highest or 0, s.frames, s.keyframes)
                for s in self.streams.values()}

    def has_media(self) -> bool:
        kinds = {s.kind for s in self.streams.values() if s.received}
        video_ok = any(s.kind == "video" and s.keyframes for s in self.streams.values())
        return "audio" in kinds and video_ok

    async def close(self) -> None:
        if self._rr_task is not None:
            self._rr_task.cancel()
        await super().close()


def _vp8_key(data: bytes, pos: int, end: int) -> bool:
    """S=1 and PID=0 checked by the caller; P bit of the frame tag == 0."""
    b0 = data[pos]
    i = pos + 1
    if b0 & 0x80:
        x = data[i]
        i += 1
        if x & 0x80:
            i += 2 if data[i] & 0x80 else 1
        if x & 0x40:
            i += 1
        if x & 0x30:
            i += 1
    return i < end and not data[i] & 0x01
