"""Simulcast in SDP (RFC 8851 a=rid, RFC 8853 a=simulcast): read a publisher's offer, write
the answer's lines.

aiortc's SDP parser drops both attributes, so they are read from the raw text, per
m-section in order. What a browser offers for a camera published with three encodings:

    a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id
    a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id
    a=rid:r0 send
    a=rid:r1 send
    a=rid:r2 send
    a=simulcast:send r0;r1;r2

The send list is taken as the spatial layers from low to high (layer 0 = the first rid),
the order mediasoup-client and our web client list their encodings in. Anything else (a
rid that is not a token, a recv rid or list in a publisher's offer, a list naming an
undeclared rid, more than MAX_LAYERS layers, simulcast without the rid extension) is an
SdpError: refused before anything changes.
"""

from __future__ import annotations

import re

from .errors import SdpError

URI_RID = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
URI_REPAIRED_RID = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"
MAX_LAYERS = 3  # spatial layers a producer takes (browsers send 3 for VP8 at 720p)
MAX_RID_LINES = 16  # a=rid lines per m-section before the offer is refused
RID = re.compile(r"[A-Za-z0-9_-]{1,16}")  # RFC 8851 rid-syntax, bounded


def section_attributes(text: str) -> list[list[str]]:
    """The a= attribute values of each m-section, in order (without the 'a=')."""
    sections: list[list[str]] = []
    for line in text.splitlines():
        if line.startswith("m="):
            sections.append([])
        elif line.startswith("a=") and sections:
            sections[-1].append(line[2:].strip())
    return sections


def offered_rids(attributes: list[str], mid: str) -> tuple[str, ...]:
    """The spatial layers (rids, low to high) one m-section of a publisher's offer sends;
    () without a=simulcast (a=rid lines alone announce nothing to send)."""
    declared: list[str] = []
    simulcast: list[str] = []
    for attr in attributes:
        if attr.startswith("rid:"):
            declared.append(_rid_line(attr[4:], mid, declared))
        elif attr.startswith("simulcast:"):
            if simulcast:
                raise SdpError(f"m-section {mid!r} has more than one a=simulcast")
            simulcast = _simulcast_line(attr[10:], mid)
    if not simulcast:
        return ()
    for rid in simulcast:
        if rid not in declared:
            raise SdpError(f"m-section {mid!r}: a=simulcast names rid {rid!r} that no "
                           "a=rid line declares")
    return tuple(simulcast)


def _rid_line(value: str, mid: str, declared: list[str]) -> str:
    parts = value.split()
    if len(parts) < 2 or not RID.fullmatch(parts[0]):
        raise SdpError(f"m-section {mid!r} has a malformed a=rid line")
    if parts[1] != "send":
        raise SdpError(f"m-section {mid!r}: a publisher's rid must be 'send'")
    if parts[0] in declared:
        raise SdpError(f"m-section {mid!r} declares rid {parts[0]!r} twice")
    if len(declared) >= MAX_RID_LINES:
        raise SdpError(f"m-section {mid!r} has more than {MAX_RID_LINES} a=rid lines")
    return parts[0]


def _simulcast_line(value: str, mid: str) -> list[str]:
    parts = value.split()
    if len(parts) != 2 or parts[0] != "send":
        raise SdpError(f"m-section {mid!r}: a publisher's a=simulcast must be 'send <rids>'")
    rids = []
    for stream in parts[1].split(";"):
        # Alternatives ("a,b") are formats of one layer: the first is taken. "~" marks a
        # layer paused at the start; it is received all the same once it flows.
        first = stream.split(",")[0].removeprefix("~")
        if not RID.fullmatch(first):
            raise SdpError(f"m-section {mid!r} has a malformed a=simulcast list")
        if first in rids:
            raise SdpError(f"m-section {mid!r} lists rid {first!r} twice in a=simulcast")
        rids.append(first)
    if len(rids) > MAX_LAYERS:
        raise SdpError(f"m-section {mid!r} offers {len(rids)} simulcast layers, at most "
                       f"{MAX_LAYERS} are taken")
    return rids


def answer_lines(rids: tuple[str, ...]) -> list[str]:
    """The answer's lines for the layers taken: a=rid recv each, then a=simulcast:recv."""
    if not rids:
        return []
    return [*(f"a=rid:{rid} recv" for rid in rids), f"a=simulcast:recv {';'.join(rids)}"]
