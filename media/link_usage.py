"""What one node link carries, summed over the meetings it serves (the admin view).

A node link is one `LinkTransport` shared by every meeting's link peer ``link:<name>``;
its numbers are read here, from the SFU's own objects, so that the server never reaches
into transports.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .errors import NotFoundError
from .link import Cascade
from .transport import WebRtcTransport
from .types import Direction


def link_usage(cascades: Iterable[Cascade], name: str) -> dict[str, Any]:
    """Streams imported/exported over the link to node `name` in all `cascades`, the
    bitrates of its media transport(s), its DTLS handshakes and which halves are in use."""
    carried: dict[str, Any] = {"imported": 0, "exported": 0, "bitrate_in_bps": 0,
                               "bitrate_out_bps": 0}
    transports: dict[int, WebRtcTransport] = {}  # of the link, all meetings
    halves: set[str] = set()
    for cascade in cascades:
        end = cascade.links.get(name)
        if end is None or end.closed:
            continue
        carried["imported"] += len(end.imported)
        carried["exported"] += len(end.exported())
        try:
            peer = cascade.router.peer(end.peer_id)
        except NotFoundError:
            continue
        for direction, half in ((Direction.SEND, "import"), (Direction.RECV, "export")):
            transport = peer.transport(direction)
            if transport is not None and not transport.closed:
                transports[id(transport)] = transport
                halves.add(half)
    for transport in transports.values():
        stats = transport.stats()
        carried["bitrate_in_bps"] += stats.bitrate_in_bps
        carried["bitrate_out_bps"] += stats.bitrate_out_bps
    # One ICE/DTLS/SRTP transport per link carries every meeting both ways.
    carried["media_transports"] = len(transports)
    carried["dtls_handshakes"] = sum(t.handshakes for t in transports.values())
    carried["directions"] = sorted(halves)
    return carried
