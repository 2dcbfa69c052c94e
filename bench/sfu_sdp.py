"""SDP for bench/sfu_client.py's endpoints: the server's offer or answer parsed into media
sections, and the remote ICE/DTLS transport taken from it, refusing any address but the one
expected (the bench talks to loopback only)."""

from __future__ import annotations

from dataclasses import dataclass, field

from aioice import Candidate
from aiortc import RTCDtlsFingerprint


class UnsafeAddress(RuntimeError):
    """A server described or used an address other than the expected one."""


@dataclass
class MediaSection:
    kind: str
    port: int
    proto: str
    fmts: list[str]
    attrs: list[tuple[str, str]] = field(default_factory=list)  # (name, value)
    connection: str | None = None

    def values(self, name: str) -> list[str]:
        return [v for n, v in self.attrs if n == name]

    def value(self, name: str) -> str | None:
        vals = self.values(name)
        return vals[0] if vals else None

    def has(self, name: str) -> bool:
        return any(n == name for n, _ in self.attrs)

    @property
    def mid(self) -> str:
        return self.value("mid") or ""

    @property
    def direction(self) -> str:
        for d in ("sendonly", "recvonly", "sendrecv", "inactive"):
            if self.has(d):
                return d
        return "sendrecv"

    def rtpmap(self) -> dict[int, tuple[str, int, str | None]]:
        out = {}
        for v in self.values("rtpmap"):
            pt, _, desc = v.partition(" ")
            parts = desc.split("/")
            out[int(pt)] = (parts[0], int(parts[1]), parts[2] if len(parts) > 2 else None)
        return out

    def fmtp(self) -> dict[int, str]:
        out = {}
        for v in self.values("fmtp"):
            pt, _, params = v.partition(" ")
            out[int(pt)] = params
        return out

    def feedback(self, pt: int) -> list[str]:
        out = []
        for v in self.values("rtcp-fb"):
            p, _, fb = v.partition(" ")
            if p in (str(pt), "*"):
                out.append(fb.strip())
        return out

    def extmaps(self) -> dict[str, int]:
        out = {}
        for v in self.values("extmap"):
            ident, _, rest = v.partition(" ")
            out[rest.split(" ")[0]] = int(ident.split("/")[0])
        return out


@dataclass
class Sdp:
    session_attrs: list[tuple[str, str]]
    media: list[MediaSection]
    session_connection: str | None = None

    def attr(self, section: MediaSection | None, name: str) -> str | None:
        if section is not None and (v := section.value(name)) is not None:
            return v
        return next((v for n, v in self.session_attrs if n == name), None)


def parse_sdp(text: str) -> Sdp:
    session_attrs: list[tuple[str, str]] = []
    media: list[MediaSection] = []
    session_connection = None
    for raw in text.splitlines():
        line = raw.strip()
        if len(line) < 2 or line[1] != "=":
            continue
        kind, value = line[0], line[2:]
        if kind == "m":
            parts = value.split()
            media.append(MediaSection(parts[0], int(parts[1]), parts[2], parts[3:]))
        elif kind == "c":
            if media:
                media[-1].connection = value
            else:
                session_connection = value
        elif kind == "a":
            name, _, val = value.partition(":")
            (media[-1].attrs if media else session_attrs).append((name, val))
    return Sdp(session_attrs, media, session_connection)


@dataclass
class RemoteTransport:
    ufrag: str
    pwd: str
    fingerprints: list[RTCDtlsFingerprint]
    setup: str
    candidates: list[Candidate]


def check_addresses(sdp: Sdp, expected: str) -> None:
    """Abort unless every candidate and connection address is `expected`."""
    for conn in [sdp.session_connection] + [m.connection for m in sdp.media]:
        if conn is None:
            continue
        ip = conn.split()[-1].split("/")[0]
        if ip not in ("0.0.0.0", expected):
            raise UnsafeAddress(f"server SDP has c={conn!r}, expected {expected}")
    for section in sdp.media:
        for value in section.values("candidate"):
            fields = value.split()
            ip, ctype = fields[4], fields[7] if len(fields) > 7 else "?"
            if ip != expected:
                raise UnsafeAddress(f"server candidate {value!r}: address is not {expected}")
            if ctype != "host":
                raise UnsafeAddress(f"server candidate {value!r}: not a host candidate")


def remote_transport(sdp: Sdp, expected_address: str) -> RemoteTransport:
    check_addresses(sdp, expected_address)
    live = [m for m in sdp.media if m.port != 0] or sdp.media
    first = live[0]
    ufrag, pwd = sdp.attr(first, "ice-ufrag"), sdp.attr(first, "ice-pwd")
    fingerprint, setup = sdp.attr(first, "fingerprint"), sdp.attr(first, "setup")
    if not (ufrag and pwd and fingerprint and setup):
        raise RuntimeError("server SDP lacks ICE credentials, fingerprint or setup")
    algorithm, _, value = fingerprint.partition(" ")
    candidates = []
    seen = set()
    for section in live:
        for value_ in section.values("candidate"):
            c = Candidate.from_sdp(value_)
            if c.component != 1 or c.transport.lower() != "udp":
                continue
            key = (c.host, c.port)
            if key not in seen:
                seen.add(key)
                candidates.append(c)
    if not candidates:
        raise RuntimeError("server SDP has no usable candidate")
    return RemoteTransport(ufrag, pwd, [RTCDtlsFingerprint(algorithm.lower(), value.strip())],
                           setup, candidates)
