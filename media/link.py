"""Cascade links: one meeting spread over several SFU nodes (province, city, ward).

`Cascade` (the ends of one node: catalogs with split horizon, demand) is here with
`connect_local()`; `LinkEnd` (one end: export, import, release, layer demand) with its
limits and counters is in media/link_end.py. Both share the wire messages below.

A node-to-node link is built from the SFU's own primitives. Each end of a
link is an ordinary `Peer` named ``link:<name>`` in the meeting's router:

* To *export* a local producer over the link, an end subscribes its link
  peer to it (recv transport: this end offers) and pushes the offer to the
  other end.
* The other end *imports* it: it hands the offer to its own link peer's
  `publish()` (send transport: it answers) with a `ProducerOrigin`, so the
  relayed producer keeps the origin's id and publisher on every node.

So a stream crosses a link once whatever the number of subscribers behind
it: local consumers, and the link peers of further links, all fan out from
the one imported producer. PLI/FIR, NACK and REMB travel hop by hop through
the consumer/producer pair of each hop, with the SFU's usual per-producer
keyframe rate limit applying at every hop.

Links are demand-driven: an end imports a producer only when asked
(`Cascade.ensure`, by a local subscriber or by another link), and releases
it `release_after_s` after its last consumer went away. Catalogs (what an
end can supply) are pushed in both directions and are transitive with split
horizon: an end advertises its router's producers and the other links'
catalogs, never what it learned from that same link.

Signaling is abstract: a link end only needs a `request(op, data)`
coroutine reaching the other end's `handle(op, data)`. The server carries it
over socket.io (server/cascade/link.py); tests use `connect_local()`.
Messages are JSON-safe dicts:

  catalog  {"producers": [ProducerInfo as dict + "hops"],
            "peers": [{"id", "app_data", "hops"}]}           -> {}
  pull     {"ids": [...]}   the other end exports them, then  -> {}
  offer    {"sdp", "consumers": [{mid, producer_id, producer_peer_id, source,
                                  rid?, rids?}]}
           (pushed by the exporting end; a simulcast producer has one section per
           layer, `rid` its layer, `rids` the producer's low to high: the importer
           makes one simulcast producer of them)                -> {"sdp": answer}
  release  {"ids": [...]}                                       -> {}
  layers   {"producer_id", "layers": [0..2, ...]}: the importer needs only these
           layers of a simulcast export (sent when that changes, checked every
           `layers_interval_s`); the others' link consumers pause   -> {}
  reset    {}: the sender's link peer for this meeting closed (the link's
           shared transport stays); the receiver closes its own      -> {}
  control  {"producer_id"?, ...}: an opaque server command (chair controls),
           from the parent end only                             -> the handler's reply

Bad input (unknown op, oversize lists, a flood beyond the rate limit, SDP
errors) is answered with {"error": reason}, logged, and changes nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from .errors import MediaError, NotFoundError
from .events import (
    ConsumerClosed,
    MediaEvent,
    PeerClosed,
    ProducerAdded,
    ProducerClosed,
    ProducerPaused,
    RenegotiationNeeded,
)
from .link_end import (
    LINK_PEER_PREFIX,
    MAX_CATALOG,
    MAX_HOPS,
    MAX_IDS,
    RELAYED,
    Control,
    LinkCounters,
    LinkEnd,
    LinkError,
    LinkLimits,
    Request,
    layers_wanted,
)
from .link_transport import LinkTransport
from .router import Router

__all__ = ["LINK_PEER_PREFIX", "MAX_CATALOG", "MAX_HOPS", "MAX_IDS", "RELAYED", "Cascade",
           "Control", "LinkCounters", "LinkEnd", "LinkError", "LinkLimits", "Request",
           "connect_local", "layers_wanted", "relayed"]

logger = logging.getLogger(__name__)


class Cascade:
    """The cascade state of one meeting (router) on one node: its links."""

    def __init__(self, router: Router, node: str, limits: LinkLimits | None = None) -> None:
        self.router = router
        self.node = node
        self.limits = limits or LinkLimits()
        self.links: dict[str, LinkEnd] = {}
        self._release_timers: dict[str, asyncio.TimerHandle] = {}
        # Imported producers lost without being released (link or path upstream
        # down), with when: re-pulled as soon as a catalog offers them again.
        self.lost: dict[str, float] = {}
        self._observers: list[Callable[[], None]] = []
        self._link_observers: list[Callable[[LinkEnd], None]] = []
        # Applies a control (e.g. chair mute) on this node; set by the server.
        self.control_handler: Control | None = None
        self._remove_listener = router.add_listener(self._on_event)

    def on_available_changed(self, observer: Callable[[], None]) -> None:
        """Call `observer` (inline, must not block) when `available()` may have changed
        because of a catalog or a link: the server tells its clients."""
        self._observers.append(observer)

    def on_link_added(self, observer: Callable[[LinkEnd], None]) -> None:
        """Call `observer(end)` (inline) for each new link end, e.g. to bring a child
        node up to date with the meeting's state."""
        self._link_observers.append(observer)

    def _notify(self) -> None:
        for observer in self._observers:
            try:
                observer()
            except Exception:
                logger.exception("cascade: observer failed")

    def add_link(self, name: str, request: Request, push: bool = True,
                 upstream: bool = False, transport: LinkTransport | None = None) -> LinkEnd:
        """A new link end; `push=False` defers the first catalog (the other
        end does not exist yet: call `end.push_catalog()` once it does);
        `upstream`: the other end is this node's parent; `transport`: the node
        link's one transport, shared by all its meetings (default: the end's own)."""
        if name in self.links and not self.links[name].closed:
            raise MediaError(f"link {name} already exists in router {self.router.id}")
        end = LinkEnd(self, name, request, self.limits, upstream, transport)
        self.links[name] = end
        if push:
            end.push_catalog()
        for observer in self._link_observers:
            observer(end)
        return end

    async def remove_link(self, name: str) -> None:
        end = self.links.pop(name, None)
        if end is not None:
            now = time.monotonic()
            for producer_id in end.imported:
                self.lost[producer_id] = now
            await end.close()
            self._catalog_changed_except(None)
            self._notify()

    async def close(self) -> None:
        self._remove_listener()
        for timer in self._release_timers.values():
            timer.cancel()
        for name in list(self.links):
            await self.remove_link(name)

    # -- catalogs -------------------------------------------------------------------------------
    def available(self) -> dict[str, dict[str, Any]]:
        """Every producer a local subscriber may ask for, local or remote."""
        out: dict[str, dict[str, Any]] = {}
        for end in self.links.values():
            out.update(end.remote_catalog)
        for info in self.router.producers():
            if not info.peer_id.startswith(LINK_PEER_PREFIX):
                out[info.id] = _entry(asdict(info), out.get(info.id, {}).get("hops", 0))
        return out

    def catalog_for(self, end: LinkEnd) -> list[dict[str, Any]]:
        """What we advertise over `end`: split horizon, hop counted."""
        out: dict[str, dict[str, Any]] = {}
        for other in self.links.values():
            if other is end:
                continue
            for pid, entry in other.remote_catalog.items():
                out[pid] = {**entry, "hops": int(entry.get("hops", 0)) + 1}
        for info in self.router.producers():
            if info.id in end.imported or info.id in end.remote_catalog:
                continue
            if info.id not in out:
                out[info.id] = _entry(asdict(info), 0)
            out[info.id]["paused"] = info.paused
        return [e for e in out.values() if e["hops"] < MAX_HOPS]

    def peers_for(self, end: LinkEnd) -> list[dict[str, Any]]:
        """The people in this meeting's media we advertise over `end` (local ones and
        other links'), split horizon and hop counted like producers."""
        out = [{**p, "hops": int(p.get("hops", 0)) + 1} for other in self.links.values()
               if other is not end for p in other.remote_peers.values()]
        out += [{"id": peer.id, "app_data": dict(peer.app_data), "hops": 0}
                for peer in self.router.peers if not peer.id.startswith(LINK_PEER_PREFIX)]
        return [p for p in out if p["hops"] < MAX_HOPS]

    def available_peers(self) -> dict[str, dict[str, Any]]:
        """People in this meeting's media on other nodes."""
        return {pid: p for end in self.links.values() for pid, p in end.remote_peers.items()}

    def local_peers_changed(self) -> None:
        """A local peer joined: tell the links (a peer's closing is seen by the cascade)."""
        self._catalog_changed_except(None)

    def catalog_changed(self, source: LinkEnd) -> None:
        self._catalog_changed_except(source)
        self._notify()
        now = time.monotonic()
        for producer_id, since in list(self.lost.items()):
            if now - since > self.limits.repull_window_s:
                del self.lost[producer_id]
            elif producer_id in source.remote_catalog:
                del self.lost[producer_id]
                source._spawn(self._repull(source, producer_id))

    async def _repull(self, end: LinkEnd, producer_id: str) -> None:
        delay = 0.1
        deadline = time.monotonic() + self.limits.repull_window_s
        while not end.closed and producer_id in end.remote_catalog:
            try:
                await end.pull([producer_id])
                return
            except (MediaError, ConnectionError) as exc:
                end._note(f"re-pull of {producer_id} failed: {exc}")
            if time.monotonic() + delay > deadline:
                return
            await asyncio.sleep(delay)  # e.g. the other end's old peer is still closing
            delay = min(delay * 2, 1.0)

    def _catalog_changed_except(self, source: LinkEnd | None) -> None:
        for end in self.links.values():
            if end is not source and not end.closed:
                end.push_catalog()

    # -- controls ---------------------------------------------------------------------------
    async def control(self, data: dict[str, Any], source: LinkEnd | None = None
                      ) -> dict[str, Any]:
        """An opaque command (the server's chair controls) travelling down the tree only.

        With a ``producer_id`` it goes to the node where that producer is published (an
        error if that is upstream); without, it applies here and on every child link.
        Only a parent's controls are obeyed (`LinkEnd.upstream`), so a lower node can
        never control an upper node's people."""
        producer_id = data.get("producer_id")
        if producer_id is not None:
            end = next((e for e in self.links.values() if producer_id in e.remote_catalog
                        and e is not source and not e.closed), None)
            if end is None:
                return await self._apply_control(data)
            if end.upstream:
                raise LinkError("a producer of an upper node is controlled by that node")
            return await end.request("control", data)
        result = await self._apply_control(data)
        for end in self.links.values():
            if end is not source and not end.upstream and not end.closed:
                self.send_control(end, data)
        return result

    def send_down(self, data: dict[str, Any]) -> None:
        """Send a control to every child link, in the background."""
        for end in self.links.values():
            if not end.upstream and not end.closed:
                self.send_control(end, data)

    def send_control(self, end: LinkEnd, data: dict[str, Any]) -> None:
        """Send a control down one link, in the background."""
        end._spawn(self._forward_control(end, data))

    async def _apply_control(self, data: dict[str, Any]) -> dict[str, Any]:
        return await self.control_handler(data) if self.control_handler else {}

    @staticmethod
    async def _forward_control(end: LinkEnd, data: dict[str, Any]) -> None:
        try:
            await end.request("control", data)
        except (LinkError, ConnectionError) as exc:
            end._note(f"control not delivered: {exc}")

    # -- demand ------------------------------------------------------------------------------
    async def ensure(self, producer_id: str, exclude: LinkEnd | None = None) -> None:
        """Make a producer exist in this router, pulling it over a link if needed."""
        timer = self._release_timers.pop(producer_id, None)
        if timer is not None:
            timer.cancel()
        try:
            self.router.get_producer(producer_id)
            return
        except NotFoundError:
            pass
        for end in self.links.values():
            if end is not exclude and not end.closed and producer_id in end.remote_catalog:
                await end.pull([producer_id])
                return
        raise NotFoundError(f"producer {producer_id} is not available to router "
                            f"{self.router.id}")

    def _on_event(self, event: MediaEvent) -> None:
        if isinstance(event, PeerClosed):
            if not event.peer_id.startswith(LINK_PEER_PREFIX):
                self._catalog_changed_except(None)
            else:
                for end in self.links.values():
                    if end.peer_id == event.peer_id:
                        end.peer_closed()
        if isinstance(event, (ProducerAdded, ProducerClosed, ProducerPaused)):
            self._catalog_changed_except(None)
            if isinstance(event, ProducerClosed):
                for end in self.links.values():
                    if event.producer_id in end.imported:
                        end.imported.discard(event.producer_id)
                        if event.producer_id not in end.releasing:
                            # Lost, not released: re-pull it when a catalog offers it again.
                            self.lost[event.producer_id] = time.monotonic()
                    end.releasing.discard(event.producer_id)
        elif isinstance(event, RenegotiationNeeded):
            for end in self.links.values():
                if end.peer_id == event.peer_id and not end.closed:
                    end.renegotiate()
        elif isinstance(event, ConsumerClosed):
            self._maybe_release(event.producer_id)

    def _maybe_release(self, producer_id: str) -> None:
        end = next((e for e in self.links.values() if producer_id in e.imported), None)
        if end is None or producer_id in self._release_timers:
            return
        loop = asyncio.get_running_loop()
        self._release_timers[producer_id] = loop.call_later(
            self.limits.release_after_s, self._release_if_unused, producer_id)

    def _release_if_unused(self, producer_id: str) -> None:
        self._release_timers.pop(producer_id, None)
        end = next((e for e in self.links.values() if producer_id in e.imported), None)
        if end is None or end.closed:
            return
        try:
            producer = self.router.get_producer(producer_id)
        except NotFoundError:
            return
        if not producer.consumers:
            end._spawn(self._release(end, producer_id))

    async def _release(self, end: LinkEnd, producer_id: str) -> None:
        try:
            await end.release([producer_id])
        except (LinkError, ConnectionError) as exc:
            end._note(f"release failed: {exc}")

    def stats(self) -> dict[str, Any]:
        return {"node": self.node, "router": self.router.id,
                "links": [e.stats() for e in self.links.values()]}


def relayed(app_data: dict[str, Any]) -> bool:
    """A producer imported over a cascade link (its publisher is on another node)."""
    return RELAYED in app_data


def _entry(info: dict[str, Any], hops: int) -> dict[str, Any]:
    return {"id": info["id"], "peer_id": info["peer_id"], "kind": str(info["kind"].value
            if hasattr(info["kind"], "value") else info["kind"]),
            "source": str(info["source"].value if hasattr(info["source"], "value")
                          else info["source"]),
            "codec": info["codec"], "paused": info["paused"],
            "app_data": {k: v for k, v in (info.get("app_data") or {}).items()
                         if k != RELAYED}, "hops": hops}


def connect_local(a: Cascade, b: Cascade, name_a: str, name_b: str,
                  delay_s: float = 0.0,
                  transports: tuple[LinkTransport, LinkTransport] | None = None
                  ) -> tuple[LinkEnd, LinkEnd]:
    """Link two cascades in one process (tests, benchmarks): requests go
    through a JSON round trip, as they would over the network. `b` is `a`'s parent.
    `transports` (a's, b's): the node link's transports, to carry several meetings
    over one link; by default each end has its own."""
    ends: dict[str, LinkEnd] = {}

    def make(target: str) -> Request:
        async def request(op: str, data: dict[str, Any]) -> dict[str, Any]:
            payload = json.loads(json.dumps(data))
            if delay_s:
                await asyncio.sleep(delay_s)
            end = ends.get(target)
            if end is None or end.closed:
                raise ConnectionError("link is down")
            return json.loads(json.dumps(await end.handle(op, payload)))
        return request

    ta, tb = transports or (None, None)
    ends["a"] = a.add_link(name_a, make("b"), upstream=True, transport=ta)
    ends["b"] = b.add_link(name_b, make("a"), transport=tb)
    return ends["a"], ends["b"]
