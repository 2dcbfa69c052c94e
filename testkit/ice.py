"""Where test and benchmark WebRTC clients gather ICE candidates."""

from __future__ import annotations

import aioice.ice


def gather_only_on(*addresses: str) -> None:
    """aioice gathers host candidates on every interface but loopback; make every aiortc or
    aioice endpoint of this process gather on exactly `addresses` instead (loopback, or a
    benchmark's own network namespace). Process-wide, for client and node processes; a
    pytest test patches it with monkeypatch so that it is undone. The SFU itself is told its
    addresses (MediaConfig.ice_addresses) and never calls this function."""

    def host_addresses(use_ipv4: bool = True, use_ipv6: bool = True) -> list[str]:
        return list(addresses)

    aioice.ice.get_host_addresses = host_addresses
