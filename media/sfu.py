"""SFU: the entry point. Owns one Router per meeting."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Callable
from typing import Any

from aiortc import RTCCertificate

from .closing import CloseOnce
from .config import MediaConfig
from .errors import ClosedError, NotFoundError
from .events import EventBus, Listener
from .link_transport import LinkTransport
from .router import Router

CERTIFICATE_MARGIN = datetime.timedelta(days=2)


class SFU:
    """Selective forwarding unit. One per process; routers are meetings."""

    def __init__(self, config: MediaConfig) -> None:
        self.config = config
        self.bus = EventBus()
        self._routers: dict[str, Router] = {}
        self._certificate: RTCCertificate | None = None
        self._closing = CloseOnce()

    @property
    def certificate(self) -> RTCCertificate:
        """One DTLS certificate for all transports, renewed before it expires
        (aiortc's are valid 30 days; renewal only affects new transports)."""
        now = datetime.datetime.now(datetime.UTC)
        if self._certificate is None or self._certificate.expires - now < CERTIFICATE_MARGIN:
            self._certificate = RTCCertificate.generateCertificate()
        return self._certificate

    def link_transport(self, *, parent: bool,
                       on_failed: Callable[[], None] | None = None) -> LinkTransport:
        """A node link's one media transport (media/link_transport.py): `parent` if this
        end is the parent node; `on_failed` runs if the transport fails under the link."""
        return LinkTransport(self.config, self.certificate, parent=parent, on_failed=on_failed)

    def router(self, router_id: str, *, max_bitrate_bps: int | None = None) -> Router:
        """The meeting's router, created on first use."""
        if self._closing.started:
            raise ClosedError("SFU is closed")
        router = self._routers.get(router_id)
        if router is None:
            router = self._routers[router_id] = Router(self, router_id, max_bitrate_bps)
        return router

    def get_router(self, router_id: str) -> Router:
        router = self._routers.get(router_id)
        if router is None:
            raise NotFoundError(f"no router {router_id}")
        return router

    @property
    def routers(self) -> list[Router]:
        return list(self._routers.values())

    def add_listener(self, listener: Listener) -> Any:
        """Events of every router; returns a function that removes the listener."""
        return self.bus.add_listener(listener)

    def client_configuration(self) -> dict[str, Any]:
        """RTCConfiguration for browsers (both of their RTCPeerConnections)."""
        return {"iceServers": self.config.client_ice_servers(), "bundlePolicy": "max-bundle",
                "rtcpMuxPolicy": "require"}

    def router_closed(self, router: Router) -> None:
        if self._routers.get(router.id) is router:
            del self._routers[router.id]

    async def close_router(self, router_id: str) -> None:
        await self.get_router(router_id).close()

    async def close(self) -> None:
        """Idempotent: closes every router (peers, transports, tasks)."""
        await self._closing.run(self._close_routers)

    async def _close_routers(self) -> None:
        await asyncio.gather(*(r.close() for r in list(self._routers.values())))
