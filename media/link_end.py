"""One end of a cascade link (`LinkEnd`), its limits and counters, the wire helpers.

The design and the wire messages are in media/link.py's docstring (and docs/cascade.md);
`Cascade` (the ends of one node) and `connect_local()` stay there. Split out of
media/link.py as planned: an end exports (a link consumer per simulcast layer), imports
(one producer per origin, a simulcast one from its layers' sections), releases, and tells
which simulcast layers it still needs (`layers`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import MediaError, NotFoundError
from .link_transport import LinkTransport
from .peer import Peer
from .producer import Producer
from .ratelimit import TokenBucket
from .types import CloseReason, ProducerOrigin, ServerOffer

if TYPE_CHECKING:
    from .link import Cascade

logger = logging.getLogger("media.link")  # one logger for the link's two modules

Request = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]
Control = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]

LINK_PEER_PREFIX = "link:"
RELAYED = "cascade"  # the app_data key of a producer imported over a link: {"via", "hops"}
MAX_IDS = 64
MAX_CATALOG = 2000
MAX_HOPS = 8


class LinkError(MediaError):
    """The other end refused or failed a link request."""


@dataclass
class LinkLimits:
    request_timeout_s: float = 5.0  # a slow other end never blocks us longer
    release_after_s: float = 2.0  # unused imports are released after this
    rate_per_s: float = 200.0  # requests accepted from the other end...
    burst: float = 400.0  # ...with this burst (token bucket)
    repull_window_s: float = 60.0  # lost imports are re-pulled if they return within this
    layers_interval_s: float = 0.5  # an importer re-tells which simulcast layers it needs


@dataclass
class LinkCounters:
    requests_sent: int = 0
    requests_received: int = 0
    requests_refused: int = 0
    pulls: int = 0
    releases: int = 0
    offers: int = 0
    layer_demands: int = 0  # `layers` requests sent (the layers needed here changed)
    errors: list[str] = field(default_factory=list)


class LinkEnd:
    """One end of a link, inside one meeting's router on one node."""

    def __init__(self, cascade: Cascade, name: str, request: Request,
                 limits: LinkLimits, upstream: bool = False,
                 transport: LinkTransport | None = None) -> None:
        self.cascade = cascade
        self.name = name
        self.upstream = upstream  # the other end is our parent: its controls are obeyed
        self.peer_id = LINK_PEER_PREFIX + name
        self._request = request
        self.limits = limits
        self.remote_catalog: dict[str, dict[str, Any]] = {}
        self.remote_peers: dict[str, dict[str, Any]] = {}  # people in media over there
        self.imported: set[str] = set()  # producers this end pulled (local copies)
        self.releasing: set[str] = set()  # imports we asked the other end to drop
        self.counters = LinkCounters()
        self._bucket = TokenBucket(limits.rate_per_s, limits.burst)
        self._negotiating = asyncio.Lock()
        self._tasks: set[asyncio.Future[Any]] = set()
        self._catalog_dirty = False
        self._catalog_task: asyncio.Future[Any] | None = None
        self._pending_pulls: dict[str, asyncio.Future[None]] = {}
        # Per imported simulcast producer, the layers last asked for (absent: all, as pulled).
        self._layers_sent: dict[str, tuple[int, ...]] = {}
        self._layers_task: asyncio.Future[Any] | None = None
        # The node link's one transport, shared with the link's other meetings; without
        # one (a link made for one meeting), this end owns its own.
        self._owns_transport = transport is None
        self._resetting = False  # closing our link peer because the other end asked
        self.transport = transport or LinkTransport(
            cascade.router.config, cascade.router.certificate, parent=not upstream)
        self.closed = False

    # -- the link peer ----------------------------------------------------------------
    @property
    def peer(self) -> Peer:
        router = self.cascade.router
        try:
            return router.peer(self.peer_id)
        except NotFoundError:
            peer = router.add_peer(self.peer_id, {"cascade_link": self.name})
            peer.link_transport = self.transport
            return peer

    def exported(self) -> list[str]:
        """Local producer ids the other end currently pulls over this link."""
        try:
            peer = self.cascade.router.peer(self.peer_id)
        except NotFoundError:
            return []
        return list(dict.fromkeys(c.producer.id for c in peer.consumers))

    def stats(self) -> dict[str, Any]:
        try:
            peer_stats = self.cascade.router.peer(self.peer_id).stats().to_dict()
        except NotFoundError:
            peer_stats = None
        return {"name": self.name, "imported": sorted(self.imported),
                "exported": sorted(self.exported()), "catalog": len(self.remote_catalog),
                "counters": asdict(self.counters), "peer": peer_stats,
                "link_transport": self.transport.stats()}

    # -- outgoing requests -----------------------------------------------------------------
    async def request(self, op: str, data: dict[str, Any]) -> dict[str, Any]:
        self.counters.requests_sent += 1
        try:
            async with asyncio.timeout(self.limits.request_timeout_s):
                reply = await self._request(op, data)
        except TimeoutError:
            raise LinkError(f"link {self.name}: {op} timed out") from None
        if not isinstance(reply, dict):
            raise LinkError(f"link {self.name}: {op} got a malformed reply")
        if "error" in reply:
            raise LinkError(f"link {self.name}: {op} refused: {reply['error']}")
        return reply

    async def pull(self, producer_ids: list[str]) -> None:
        """Import producers from the other end; returns when they exist here."""
        wanted = [i for i in producer_ids if not self._has(i)]
        if not wanted:
            return
        self.counters.pulls += 1
        await self.request("pull", {"ids": wanted})
        missing = [i for i in wanted if not self._has(i)]
        if missing:
            raise LinkError(f"link {self.name}: pulled producers did not arrive: {missing}")

    async def release(self, producer_ids: list[str]) -> None:
        self.counters.releases += 1
        self.releasing.update(producer_ids)
        await self.request("release", {"ids": producer_ids})

    def push_catalog(self) -> None:
        """Send our catalog soon (coalesced; never waited for)."""
        self._catalog_dirty = True
        if self._catalog_task is None or self._catalog_task.done():
            self._catalog_task = self._spawn(self._send_catalog())

    async def _send_catalog(self) -> None:
        while self._catalog_dirty and not self.closed:
            self._catalog_dirty = False
            await asyncio.sleep(0)  # coalesce a burst of events
            try:
                await self.request("catalog", {"producers": self.cascade.catalog_for(self),
                                               "peers": self.cascade.peers_for(self)})
            except (LinkError, ConnectionError) as exc:
                self._note(f"catalog push failed: {exc}")
                return

    def _has(self, producer_id: str) -> bool:
        try:
            self.cascade.router.get_producer(producer_id)
        except NotFoundError:
            return False
        return True

    # -- incoming requests -------------------------------------------------------------------
    async def handle(self, op: str, data: Any) -> dict[str, Any]:
        """A request from the other end; errors become {"error": reason}."""
        self.counters.requests_received += 1
        if self.closed:
            return self._refuse(op, "link closed")
        if not self._bucket.take():
            return self._refuse(op, "rate limit exceeded")
        if not isinstance(data, dict):
            return self._refuse(op, "payload must be an object")
        try:
            if op == "catalog":
                return self._on_catalog(data)
            if op == "pull":
                return await self._on_pull(self._ids(data))
            if op == "release":
                return await self._on_release(self._ids(data))
            if op == "offer":
                return await self._on_offer(data)
            if op == "reset":
                return await self._on_reset()
            if op == "layers":
                return self._on_layers(data)
            if op == "control":
                if not self.upstream:
                    return self._refuse(op, "controls come from the parent node only")
                return await self.cascade.control(data, source=self)
        except (MediaError, ValueError, KeyError, TypeError) as exc:
            return self._refuse(op, f"{type(exc).__name__}: {exc}")
        return self._refuse(op, "unknown operation")

    def _refuse(self, op: str, reason: str) -> dict[str, Any]:
        self.counters.requests_refused += 1
        self._note(f"refused {op!r}: {reason}")
        return {"error": reason}

    def _note(self, message: str) -> None:
        logger.warning("cascade link %s (router %s): %s", self.name,
                       self.cascade.router.id, message)
        self.counters.errors = (self.counters.errors + [message])[-20:]

    @staticmethod
    def _ids(data: dict[str, Any]) -> list[str]:
        ids = data.get("ids")
        if (not isinstance(ids, list) or len(ids) > MAX_IDS
                or not all(isinstance(i, str) and 0 < len(i) <= 128 for i in ids)):
            raise ValueError(f"ids must be a list of at most {MAX_IDS} producer ids")
        return ids

    def _on_catalog(self, data: dict[str, Any]) -> dict[str, Any]:
        entries = data.get("producers")
        if not isinstance(entries, list) or len(entries) > MAX_CATALOG:
            raise ValueError("producers must be a bounded list")
        catalog: dict[str, dict[str, Any]] = {}
        for entry in entries:
            if (not isinstance(entry, dict) or not isinstance(entry.get("id"), str)
                    or not isinstance(entry.get("peer_id"), str)
                    or entry.get("kind") not in ("audio", "video")):
                raise ValueError("malformed catalog entry")
            hops = entry.get("hops", 0)
            if not isinstance(hops, int) or hops >= MAX_HOPS:
                continue  # a loop or an absurd depth: never re-advertise it
            catalog[entry["id"]] = entry
        peers = data.get("peers", [])
        if not isinstance(peers, list) or len(peers) > MAX_CATALOG:
            raise ValueError("peers must be a bounded list")
        remote_peers: dict[str, dict[str, Any]] = {}
        for peer in peers:
            if (not isinstance(peer, dict) or not isinstance(peer.get("id"), str)
                    or not isinstance(peer.get("app_data", {}), dict)):
                raise ValueError("malformed peer entry")
            hops = peer.get("hops", 0)
            if isinstance(hops, int) and hops < MAX_HOPS:
                remote_peers[peer["id"]] = peer
        self.remote_catalog, self.remote_peers = catalog, remote_peers
        self._apply_pauses()
        self.cascade.catalog_changed(self)
        return {}

    def _apply_pauses(self) -> None:
        """A chair mute upstream shows as a pause of the relayed producer here."""
        router = self.cascade.router
        for producer_id in list(self.imported):
            entry = self.remote_catalog.get(producer_id)
            if entry is None:
                continue
            try:
                producer = router.get_producer(producer_id)
            except NotFoundError:
                continue
            if entry.get("paused") is True and not producer.paused:
                router.pause_producer(producer_id)
            elif entry.get("paused") is False and producer.paused:
                router.resume_producer(producer_id)

    async def _on_pull(self, ids: list[str]) -> dict[str, Any]:
        for producer_id in ids:  # may pull from further links first
            await self.cascade.ensure(producer_id, exclude=self)
        peer = self.peer
        async with self._negotiating:
            subscription = await peer.subscribe(*ids, layers=True)
            await self._negotiate(peer, subscription.offer)
        return {}

    async def _on_reset(self) -> dict[str, Any]:
        """The other end's link peer for this meeting closed: close ours (imports are
        then lost and re-pulled when offered again; exports stop), as a closing
        transport used to tell. The shared link transport stays."""
        try:
            peer = self.cascade.router.peer(self.peer_id)
        except NotFoundError:
            return {}
        self._resetting = True
        try:
            await peer.close(CloseReason.TRANSPORT_CLOSED)
        finally:
            self._resetting = False
        return {}

    def peer_closed(self) -> None:
        """Our link peer closed while the link stays (e.g. the meeting's router
        closed here): tell the other end, whose peer would otherwise linger on the
        shared transport."""
        if not self.closed and not self._resetting:
            self._spawn(self._send_reset())

    async def _send_reset(self) -> None:
        try:
            await self.request("reset", {})
        except (LinkError, ConnectionError) as exc:
            logger.info("cascade link %s: reset not delivered: %s", self.name, exc)

    async def _on_release(self, ids: list[str]) -> dict[str, Any]:
        try:
            peer = self.cascade.router.peer(self.peer_id)
        except NotFoundError:
            return {}
        wanted = set(ids)
        for consumer in peer.consumers:  # renegotiation follows (RenegotiationNeeded)
            if consumer.producer.id in wanted:
                consumer.close(CloseReason.REQUESTED)
        return {}

    async def _on_offer(self, data: dict[str, Any]) -> dict[str, Any]:
        sdp, consumers = data.get("sdp"), data.get("consumers")
        if not isinstance(sdp, str) or not isinstance(consumers, list):
            raise TypeError("offer needs sdp and consumers")
        sources: dict[str, str] = {}
        origins: dict[str, ProducerOrigin] = {}
        for c in consumers:
            mid, pid = str(c["mid"]), str(c["producer_id"])
            sources[mid] = str(c["source"])
            info = self.remote_catalog.get(pid, {})
            app_data = dict(info.get("app_data") or {})
            app_data[RELAYED] = {"via": self.name, "hops": int(info.get("hops", 0)) + 1}
            rids, rid = _relayed_layer(c)
            origins[mid] = ProducerOrigin(pid, str(c["producer_peer_id"]), app_data, rids, rid)
        self.counters.offers += 1
        result = await self.peer.publish(sdp, sources, origins)
        for added in result.added:
            self.imported.add(added.id)
            self._layers_sent.pop(added.id, None)  # a new import: all its layers cross
        for producer_id in result.removed:
            self.imported.discard(producer_id)
            self._layers_sent.pop(producer_id, None)
        if self._layers_task is None and any(o.rids for o in origins.values()):
            self._layers_task = self._spawn(self._layers_loop())
        return {"sdp": result.sdp}

    # -- simulcast layer demand ---------------------------------------------------------------
    async def _layers_loop(self) -> None:
        while not self.closed:
            await asyncio.sleep(self.limits.layers_interval_s)
            await self.send_layer_demand()

    async def send_layer_demand(self) -> None:
        """Tell the exporter which layers of each imported simulcast producer someone here
        needs (`layers_wanted`), when that changed: the others stop crossing the link."""
        for producer_id in sorted(self.imported):
            try:
                producer = self.cascade.router.get_producer(producer_id)
            except NotFoundError:
                continue
            if not producer.simulcast or not (producer.consumers or producer.tap):
                continue  # nobody here: the release timer handles it
            wanted = tuple(sorted(layers_wanted(producer)))
            if self._layers_sent.get(producer_id, tuple(range(len(producer.streams)))) == wanted:
                continue
            try:
                await self.request("layers", {"producer_id": producer_id,
                                              "layers": list(wanted)})
            except (LinkError, ConnectionError) as exc:
                self._note(f"layer demand not delivered: {exc}")
                return
            self.counters.layer_demands += 1
            self._layers_sent[producer_id] = wanted

    def _on_layers(self, data: dict[str, Any]) -> dict[str, Any]:
        """The importer needs only these layers of one of our exports: pause the link
        consumers pinned to the others, resume (from a keyframe) the ones needed again."""
        producer_id, layers = data.get("producer_id"), data.get("layers")
        if (not isinstance(producer_id, str) or not isinstance(layers, list)
                or len(layers) > 3 or not all(isinstance(i, int) and not isinstance(i, bool)
                                              and 0 <= i <= 2 for i in layers)):
            raise ValueError("layers needs a producer_id and at most 3 layers 0..2")
        try:
            peer = self.cascade.router.peer(self.peer_id)
        except NotFoundError:
            return {}
        now = time.monotonic()
        for consumer in peer.consumers:
            producer = consumer.producer
            if producer.id != producer_id or not producer.simulcast:
                continue
            top = len(producer.streams) - 1
            layer = top if consumer.preferred_spatial is None else consumer.preferred_spatial
            if layer in layers and consumer.paused:
                consumer.resume()
                producer.request_keyframe(now, count_suppressed=False,
                                          layer=consumer.target_layer)
            elif layer not in layers and not consumer.paused:
                consumer.pause()
        return {}

    # -- exporting: push offers of our link peer's recv transport -------------------------------
    async def _negotiate(self, peer: Peer, offer: ServerOffer | None) -> None:
        """Caller holds self._negotiating."""
        while offer is not None and not self.closed:
            reply = await self.request("offer", {
                "sdp": offer.sdp,
                "consumers": [{"mid": c.mid, "producer_id": c.producer_id,
                               "producer_peer_id": c.producer_peer_id,
                               "source": c.source.value, **_layer_of(peer, c.id)}
                              for c in offer.consumers]})
            answer = reply.get("sdp")
            if not isinstance(answer, str):
                raise LinkError(f"link {self.name}: offer reply has no sdp")
            offer = await peer.set_answer(answer)

    def renegotiate(self) -> None:
        self._spawn(self._renegotiate())

    async def _renegotiate(self) -> None:
        try:
            peer = self.cascade.router.peer(self.peer_id)
        except NotFoundError:
            return
        async with self._negotiating:
            if peer.closed:
                return
            try:
                await self._negotiate(peer, await peer.offer())
            except (MediaError, ConnectionError) as exc:
                self._note(f"renegotiation failed: {exc}")

    # -- lifecycle -------------------------------------------------------------------------
    def _spawn(self, coro: Any) -> asyncio.Future[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        """Drop the link: its imported producers (and their local consumers)
        and its exports close; the other ends' catalogs lose what came from here."""
        if self.closed:
            return
        self.closed = True
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        try:
            peer = self.cascade.router.peer(self.peer_id)
        except NotFoundError:
            peer = None
        if peer is not None:
            await peer.close()
        if self._owns_transport:
            await self.transport.close()
        self.imported.clear()
        self.remote_catalog = {}


def layers_wanted(producer: Producer) -> set[int]:
    """The layers of a relayed simulcast producer someone on this node needs: each local
    consumer's wanted layer (its preference capped by its allocation, before the fallback
    to a layer that flows: else a layer not crossing would never be asked for) and the
    layers it forwards or waits for; each export further down its pinned layer, unless
    that link paused it (its own demand); the top layer while a recorder taps it."""
    top = len(producer.streams) - 1
    out: set[int] = {top} if producer.tap is not None else set()
    for consumer in producer.consumers:
        if consumer.closed:
            continue
        want = top if consumer.preferred_spatial is None else min(consumer.preferred_spatial,
                                                                  top)
        if consumer.peer_id.startswith(LINK_PEER_PREFIX):
            if not consumer.paused:
                out.add(want)
            continue
        if consumer.paused or consumer.allocated_off:
            continue
        if consumer.allocated_layer is not None:
            want = min(want, consumer.allocated_layer)
        out.add(want)
        out |= consumer.layers_needed()
    return out


def _layer_of(peer: Peer, consumer_id: str) -> dict[str, Any]:
    """The wire tags of an export consumer pinned to one layer of a simulcast producer:
    its rid and the producer's rids (low to high); nothing for a single-layer producer."""
    consumer = next((c for c in peer.consumers if c.id == consumer_id), None)
    if consumer is None or not consumer.producer.simulcast:
        return {}
    rids = [s.rid for s in consumer.producer.streams]
    layer = consumer.preferred_spatial
    layer = len(rids) - 1 if layer is None else min(layer, len(rids) - 1)
    return {"rid": rids[layer], "rids": rids}


def _relayed_layer(entry: dict[str, Any]) -> tuple[tuple[str, ...], str | None]:
    """(rids, rid) of an offer's consumer entry; ((), None) for a single-layer one."""
    rids, rid = entry.get("rids"), entry.get("rid")
    if rids is None and rid is None:
        return (), None
    if (not isinstance(rids, list) or not 1 <= len(rids) <= 3 or rid not in rids
            or not all(isinstance(r, str) and 0 < len(r) <= 16 for r in rids)
            or len(set(rids)) != len(rids)):
        raise ValueError("a relayed layer needs rid among 1-3 distinct rids")
    return tuple(rids), rid
