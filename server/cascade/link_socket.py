"""TCP settings of a node link's socket: the child's socket.io websocket to its parent and
the parent's accepted end of it (docs/cascade.md, "Loss on a link's pushes").

A push down the tree (a journal entry: a page turn, a vote opened) is one small TCP segment
with nothing behind it. When the WAN drops it, no later segment makes the receiver tell the
sender (no SACK, no duplicate ACK): Linux recovers it by the tail loss probe, whose timeout
for a lone segment in flight is 2·SRTT + the socket's minimum RTO (net/ipv4/tcp_output.c,
tcp_schedule_loss_probe), and that minimum is 200 ms by default (net.ipv4.tcp_rto_min_us).
Every lost push arrived 200 ms late, at each hop it was lost on. Linux 6.15+ lets a socket
lower its own minimum (TCP_RTO_MIN_US); the kernel then also caps the socket's delayed ACKs
below it (tcp_delack_max: min(TCP_DELACK_MAX_US, rto_min - 1 jiffy)), so the peer's own
probe is not fired by a late ACK from a node that sets it too.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

log = logging.getLogger(__name__)

# include/uapi/linux/tcp.h (Linux 6.15): Python's socket module does not name it yet.
TCP_RTO_MIN_US = getattr(socket, "TCP_RTO_MIN_US", 45)

_refused_logged = False  # a kernel that refuses refuses every link: said once per process


def tune(sock: Any, rto_min_ms: int) -> int | None:
    """Sets the link socket's minimum RTO to `rto_min_ms` (0: leave the system's). Returns
    the minimum the socket has (ms, read back), or None where the kernel has no per-socket
    minimum or refuses this value (an older kernel; below 2 jiffies): the system's then
    applies, said once in the log."""
    global _refused_logged
    if sock is None or rto_min_ms <= 0:
        return rto_min_of(sock)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, TCP_RTO_MIN_US, rto_min_ms * 1000)
    except OSError as exc:
        if not _refused_logged:
            _refused_logged = True
            log.warning("cascade: this kernel refuses a link socket's minimum RTO of %d ms "
                        "(TCP_RTO_MIN_US, Linux 6.15+: %s): the system's applies "
                        "(net.ipv4.tcp_rto_min_us; a lost push then waits it out)",
                        rto_min_ms, exc.strerror or exc)
        return None
    return rto_min_of(sock)


def rto_min_of(sock: Any) -> int | None:
    """The socket's minimum RTO in ms, as the kernel reads it back (None: unknown, closed)."""
    if sock is None:
        return None
    try:
        return round(sock.getsockopt(socket.IPPROTO_TCP, TCP_RTO_MIN_US) / 1000)
    except OSError:
        return None
