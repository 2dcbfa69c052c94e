"""The client's real address behind a reverse proxy (HOPSO_TRUSTED_PROXIES).

Behind nginx every connection comes from 127.0.0.1, so the login limiter's per-address
budget would be shared by everybody. X-Forwarded-For is believed only when the TCP peer is a
trusted proxy, and only as far back as the chain of trusted proxies goes: the client can put
anything at the left of the header, so it is read from the right and the first address that
is not a trusted proxy is the client. Untrusted peers' headers are ignored, never refused.

Standard library only: aiohttp-remotes' XForwardedStrict answers 400 to any request from a
peer outside the list (health probes, a cascade node straight to the port) and also rewrites
scheme and host, which socket.io's same-origin check reads; neither is wanted here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # aiohttp is imported by the middleware's factory: settings import this
    from aiohttp import web  # module, and the backup CLI parses settings without serving

    Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_HOPS = 32  # entries of X-Forwarded-For looked at; a longer chain is cut, not believed


def parse_networks(text: str) -> tuple[Network, ...]:
    """'127.0.0.1, ::1, 10.0.0.0/8' -> networks; ValueError names a bad entry."""
    networks = []
    for part in text.split(","):
        if part := part.strip():
            try:
                networks.append(ipaddress.ip_network(part, strict=False))
            except ValueError:
                raise ValueError(f"not an address or network: {part!r}") from None
    return tuple(networks)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[2001:db8::1]:4711" (RFC 7239 style)
        text = text[1:text.index("]")]
    elif text.count(":") == 1:  # "203.0.113.7:4711"
        text = text.split(":")[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _trusted(ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
             networks: Iterable[Network]) -> bool:
    return any(ip.version == n.version and ip in n for n in networks)


def client_address(peer: str | None, forwarded_for: Iterable[str],
                   trusted: tuple[Network, ...]) -> str | None:
    """The client's address: `peer` (the TCP peer) unless it is a trusted proxy; then the
    rightmost X-Forwarded-For entry that is not one (or the leftmost, if all are). A
    malformed entry ends the walk at the last address a trusted proxy vouched for."""
    peer_ip = _address(peer or "")
    if not trusted or peer_ip is None or not _trusted(peer_ip, trusted):
        return peer
    hops = [h for value in forwarded_for for h in value.split(",")]
    current = peer_ip
    for entry in reversed(hops[-MAX_HOPS:]):
        ip = _address(entry)
        if ip is None:
            break
        current = ip
        if not _trusted(ip, trusted):
            break
    return str(current)


def trusted_proxy_middleware(trusted: tuple[Network, ...]) -> Callable[..., Awaitable[
        web.StreamResponse]]:
    """The first middleware: everything after it (the login limiter, logs) sees the real
    client as request.remote. With no trusted proxy it changes nothing."""
    from aiohttp import web

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if trusted:
            real = client_address(request.remote,
                                  request.headers.getall("X-Forwarded-For", []), trusted)
            if real is not None and real != request.remote:
                request = request.clone(remote=real)
        return await handler(request)
    return middleware
