"""The child's side of a node link: one socket.io connection to the parent's ``/node``
namespace (server/cascade/link.py describes the protocol), reconnected with backoff (0.25 s
doubling, capped at 1 s); once connected it rejoins this node's meetings, mirrors the
parent's offered meetings and reports headcounts every PING_INTERVAL_S.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from typing import TYPE_CHECKING, Any

import aiohttp
import socketio

from media import LinkTransport
from server.cascade.dispatch import link_op
from server.cascade.link_socket import tune
from server.cascade.reports import MAX_BATCH, Reports
from server.cascade.reports import wire as report_wire
from server.cascade.schemas import (
    NAMESPACE,
    JournalPush,
    LinkRequest,
    NodeError,
    ack_error,
    ack_ok,
    parent_result,
    shown,
    unwrap,
    validate,
)
from server.cascade.tokens import make_token

if TYPE_CHECKING:
    from server.cascade.link import NodeCascade

log = logging.getLogger(__name__)

PING_INTERVAL_S = 2.0  # RTT and meeting directory refresh, child -> parent
MIRROR_REFRESH_S = 30.0  # the same offered meetings mirrored again (local changes since)
WINDOW = 4  # report batches in flight to the parent at once
RETRY_S = 1.0  # after a failed delivery (the link is usually going down)
LINK_UP_TIMEOUT_S = 30.0  # connect, hello, mirror and journal catch-up, as one step
CONNECT_TIMEOUT_S = 5.0  # of which the handshake (engine.io, then the /node namespace)
# A report refused for these will be refused again: settled as refused, not retried.
FINAL_REFUSALS = frozenset({"not_found", "invalid", "forbidden", "too_large"})


def _retrieved(batch: asyncio.Future[None]) -> None:
    if not batch.cancelled():  # a batch's failure is its run's, already logged
        batch.exception()


class ParentLink:
    """The child's link to its parent: reconnects with backoff, then resyncs."""

    def __init__(self, node: NodeCascade) -> None:
        self.node = node
        self.state = "idle"
        self.parent_unit: str | None = None
        self.rtt_ms: float | None = None
        self.reconnects = 0
        self.meetings: set[str] = set()  # meetings this node relays upstream
        self._reported: list[dict[str, Any]] | None = None  # headcounts the parent has
        self._refused: Any = None  # the parent's last refusal of them, logged once
        self._offered: Any = None  # the parent's offered meetings as last mirrored
        self._mirrored_at = 0.0  # when (time.monotonic())
        self._following: set[str] = set()  # meetings pulled on this connection (pushed here)
        self._task: asyncio.Future[None] | None = None
        self._client: socketio.AsyncClient | None = None
        self._session: aiohttp.ClientSession | None = None
        self._connected = asyncio.Event()
        self._lost = asyncio.Event()
        # Set by the parent's `offers` (the meetings offered here changed): the ping loop's
        # next round, which asks for them, runs now rather than up to PING_INTERVAL_S later.
        self._offers = asyncio.Event()
        # The link's one WebRTC transport (a new one per connection), for all meetings.
        self.transport: LinkTransport | None = None
        self.socket: Any = None  # the link's TCP socket (link_socket.py), while connected

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._client is not None:
            await self._client.disconnect()
        await self._teardown()
        if self._session is not None:
            await self._session.close()
        self.state = "stopped"

    def _http(self) -> aiohttp.ClientSession | None:
        """An HTTP session trusting HOPSO_PARENT_CA (else engine.io's default: system CAs)."""
        ca = self.node.settings.parent_ca
        if ca is not None and self._session is None:
            context = ssl.create_default_context(cafile=str(ca))
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context))
        return self._session

    async def wait_connected(self, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            await self._connected.wait()

    async def join(self, meeting: str) -> None:
        """Relay this meeting upstream (now, and after every reconnect)."""
        self.meetings.add(meeting)
        if self._connected.is_set():
            await self._join(meeting)

    async def _run(self) -> None:
        delay = 0.25
        settings = self.node.settings
        assert settings.parent_url and settings.secret
        while True:
            client = socketio.AsyncClient(reconnection=False, http_session=self._http())
            client.on("link", self._on_link, namespace=NAMESPACE)
            client.on("journal", self._on_journal, namespace=NAMESPACE)
            client.on("offers", self._on_offers, namespace=NAMESPACE)
            client.on("disconnect", self._on_disconnect, namespace=NAMESPACE)
            client.on("connect_error", self._on_connect_error, namespace=NAMESPACE)
            self._client = client
            self._lost.clear()
            self.transport = self.node.sfu.link_transport(parent=False,
                                                          on_failed=self._media_lost)
            self.state = "connecting"
            try:
                # Bounded as a whole: a connection the network half-opened (a WAN link that
                # drops packets, a relay that accepts and stalls) must not hang the loop.
                async with asyncio.timeout(LINK_UP_TIMEOUT_S):
                    async with asyncio.timeout(CONNECT_TIMEOUT_S):  # a stalled handshake
                        await client.connect(  # is tried again, not waited out
                            settings.parent_url, namespaces=[NAMESPACE],
                            transports=["websocket"],
                            auth={"unit": settings.unit, "token": make_token(
                                settings.unit, settings.secret)},
                            wait_timeout=3)
                    ws = getattr(client.eio, "ws", None)  # engineio's aiohttp websocket
                    self.socket = ws.get_extra_info("socket") if ws is not None else None
                    tune(self.socket, settings.link_rto_min_ms)  # as the parent's end
                    self.state = "resyncing"
                    await self._resync(client)
            except (socketio.exceptions.ConnectionError, ConnectionError,
                    TimeoutError, socketio.exceptions.SocketIOError) as exc:
                log.info("cascade: parent link to %s failed while %s: %s",
                         settings.parent_url, self.state, exc or type(exc).__name__)
                self.state = f"retrying: {exc}"
                await self._drop(client)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            delay = 0.25
            self.state = "connected"
            self._connected.set()
            pinger = asyncio.ensure_future(self._ping(client))
            deliverer = asyncio.ensure_future(self._deliver(client))
            await self._lost.wait()
            pinger.cancel()
            deliverer.cancel()
            self.state = "disconnected"
            self.reconnects += 1
            await self._drop(client)

    async def _drop(self, client: socketio.AsyncClient) -> None:
        self._connected.clear()
        self.socket = None
        try:
            async with asyncio.timeout(5):
                await client.disconnect()
        except Exception as exc:  # noqa: BLE001 - a dead socket may fail (or stall) to close
            log.debug("cascade: closing the parent socket: %r", exc)
        await self._teardown()

    async def _teardown(self) -> None:
        """Link down: local media goes on; the meetings' cascades remember what
        was imported and re-pull it when the parent's catalog offers it again."""
        unit = self.parent_unit
        if unit is not None:
            for cascade in self.node.cascades.values():
                await cascade.remove_link(unit)
        if self.transport is not None:
            await self.transport.close()

    def _media_lost(self) -> None:
        """The link's media transport failed: start the whole link again."""
        log.warning("cascade: media transport to the parent lost; reconnecting")
        self._lost.set()

    async def _on_disconnect(self, *_: Any) -> None:
        self._lost.set()

    async def _on_connect_error(self, data: Any = None) -> None:
        log.warning("cascade: cannot link to parent %s: %s", self.node.settings.parent_url, data)

    async def _resync(self, client: socketio.AsyncClient) -> None:
        hello = parent_result(await client.call("hello", {}, namespace=NAMESPACE, timeout=5),
                              "hello")
        if not isinstance(hello, dict) or not isinstance(hello.get("path"), list):
            raise ConnectionError(f"parent answered hello with {shown(hello)}")
        path = [str(u) for u in hello["path"]]
        if self.node.settings.unit in path:
            log.error("cascade: loop: parent path %s contains this node", path)
            raise ConnectionError("loop in configured parents")
        self.parent_unit = str(hello.get("unit"))
        self.node.path = [self.node.settings.unit, *path]
        self._reported = None  # a new connection: the parent forgot them
        self._offered = None  # mirrored again, whatever the parent offers
        self._following = set()  # a new connection: the parent pushes nothing here yet
        await self._sync_meetings(client)
        await self._pull_journals(client)
        await self._send_headcounts(client)
        for meeting in sorted(self.meetings):
            await self._join(meeting)

    async def _join(self, meeting: str) -> None:
        client, unit = self._client, self.parent_unit
        assert client is not None and unit is not None
        cascade = self.node.cascade(meeting)
        end = cascade.links.get(unit)
        if end is None or end.closed:
            end = cascade.add_link(unit, self._parent_request(client, meeting), push=False,
                                   upstream=True, transport=self.transport)
        reply = await client.call("join", {"meeting": meeting}, namespace=NAMESPACE, timeout=5)
        parent_result(reply, f"join {meeting}")
        end.push_catalog()

    def _parent_request(self, client: socketio.AsyncClient, meeting: str) -> Any:
        async def request(op: str, data: dict[str, Any]) -> dict[str, Any]:
            try:
                reply = await client.call("link", {"meeting": meeting, "op": op, "data": data},
                                          namespace=NAMESPACE,
                                          timeout=self.node.limits.request_timeout_s)
            except (socketio.exceptions.TimeoutError,
                    socketio.exceptions.SocketIOError) as exc:
                raise ConnectionError(f"parent link: {exc}") from None
            return unwrap(reply)
        return request

    async def _on_link(self, data: Any = None) -> dict[str, Any]:
        """The parent's `link` request: the same schema; its scope is what we joined."""
        try:
            if self.parent_unit is None:
                raise NodeError("not_joined", "not linked")
            payload = validate(LinkRequest, data)
            return ack_ok(await link_op(self.node.cascades, self.parent_unit, self.meetings,
                                      payload))
        except NodeError as exc:
            log.warning("cascade: refused the parent's link request: %s: %s", exc.code,
                        exc.message)
            return ack_error(exc.code, exc.message)
        except Exception:
            log.exception("cascade: the parent's link request failed")
            return ack_error("internal", "internal error; the request was not applied")

    async def _ping(self, client: socketio.AsyncClient) -> None:
        """RTT, and the parent's meetings to mirror, every PING_INTERVAL_S."""
        while True:
            self._offers.clear()  # this round asks for them; one set during it wakes the next
            started = time.monotonic()
            try:
                below = sorted(self.node.reachable() - {self.node.settings.unit})
                await client.call("ping", {"rtt_ms": self.rtt_ms, "below": below},
                                  namespace=NAMESPACE, timeout=5)
                self.rtt_ms = round((time.monotonic() - started) * 1000, 2)
                marks = await self._sync_meetings(client)
                await self._pull_journals(client, marks)
                await self._send_headcounts(client)
            except Exception:  # noqa: BLE001 - the disconnect handler decides
                self.rtt_ms = None
            try:
                async with asyncio.timeout(PING_INTERVAL_S):
                    await self._offers.wait()
            except TimeoutError:
                pass

    async def _send_headcounts(self, client: socketio.AsyncClient) -> None:
        counts = await self.node.directory.headcounts()
        if counts != self._reported:
            reply = await client.call("headcounts", {"counts": counts}, namespace=NAMESPACE,
                                      timeout=5)
            if isinstance(reply, dict) and reply.get("ok") is True:
                self._reported, self._refused = counts, None
            elif reply != self._refused:  # e.g. more members than the seats allotted here
                log.warning("cascade: the parent refused our headcounts: %s", shown(reply))
                self._refused = reply  # sent again at the next ping; logged once

    async def _sync_meetings(self, client: socketio.AsyncClient) -> dict[str, int] | None:
        """Mirrors what the parent offers; the same list as last time is mirrored again only
        every MIRROR_REFRESH_S (it changes nothing). Returns the parent's last seq of each
        offered meeting's journal, if it sent them (None: pull every journal)."""
        reply = parent_result(await client.call("meetings", {}, namespace=NAMESPACE,
                                                timeout=5), "meetings")
        if not isinstance(reply, dict) or not isinstance(reply.get("meetings"), list):
            return None
        offered, now = reply["meetings"], time.monotonic()
        if offered != self._offered or now - self._mirrored_at >= MIRROR_REFRESH_S:
            if await self.node.directory.mirror(offered):
                await self.node.offers_changed()  # passed on to our children at once
            self._offered, self._mirrored_at = offered, now
        marks = reply.get("journals")
        if not isinstance(marks, dict) or not all(
                isinstance(k, str) and type(v) is int for k, v in marks.items()):
            return None  # a parent of an earlier version: every journal is pulled
        return marks

    async def _on_offers(self, data: Any = None) -> None:
        """The parent's hint that the meetings it offers here changed (an invitation, new
        seats): asked for at once. It carries nothing; what is offered is read as always."""
        self._offers.set()

    # -- meeting state beyond media (server/cascade/journal.py, reports.py) -------------------
    async def _on_journal(self, data: Any = None) -> None:
        """Entries the parent pushes as they are appended; a gap is filled by a pull."""
        state, client = self.node.state, self._client
        if state is None or client is None:
            return
        try:
            push = validate(JournalPush, data)
            items = [item.model_dump() for item in push.entries]
            if not await state.journal.ingest(push.meeting, items):
                await self._pull(client, push.meeting)
        except NodeError as exc:
            log.warning("cascade: ignored a journal push: %s: %s", exc.code, exc.message)
        except (ConnectionError, socketio.exceptions.SocketIOError) as exc:  # pulled again
            log.info("cascade: journal pull after a gap failed (retried): %s", exc)
        except Exception:
            log.exception("cascade: a journal push from the parent failed")

    async def _pull_journals(self, client: socketio.AsyncClient,
                             marks: dict[str, int] | None = None) -> None:
        """Every meeting mirrored here: what the parent has after our last entry (after an
        outage, a restart) and, from then on, its pushes. With the parent's `marks` (its
        last seq of each meeting it offers), only the journals this node is behind in: a
        push missed while linked is pulled at the next ping, and a node missing nothing
        asks nothing."""
        state = self.node.state
        if state is None:
            return
        behind = None if marks is None else \
            {key for key, last in marks.items() if last > await state.journal.last(key)}
        if behind == set() and self._following >= self._offered_keys():
            return
        for key in await state.mirrors():
            if behind is not None and key not in behind and key in self._following:
                continue
            try:
                await self._pull(client, key)
            except ConnectionError as exc:
                log.info("cascade: pulling the journal of %s: %s", key, exc)

    def _offered_keys(self) -> set[str]:
        offered = self._offered if isinstance(self._offered, list) else []
        return {m["key"] for m in offered if isinstance(m, dict) and isinstance(m.get("key"), str)}

    async def _pull(self, client: socketio.AsyncClient, key: str) -> None:
        """What the parent has after our last entry; the first pull of a meeting on a
        connection also makes the parent push its entries here from then on."""
        state = self.node.state
        assert state is not None
        while True:
            after = await state.journal.last(key)
            reply = parent_result(await client.call(
                "journal", {"meeting": key, "after": after}, namespace=NAMESPACE, timeout=10),
                f"journal {key}")
            push = validate(JournalPush, {"meeting": key, "entries": reply.get("entries")})
            await state.journal.ingest(key, [item.model_dump() for item in push.entries])
            self._following.add(key)
            if not reply.get("more"):
                return

    async def _deliver(self, client: socketio.AsyncClient) -> None:
        """This node's outbox, oldest first, to the parent; a report leaves it only once the
        parent stored or applied it (or refused it, with the reason kept)."""
        state = self.node.state
        if state is None:
            return
        while True:
            try:
                await self._deliver_run(client, state.reports)
            except (ConnectionError, TimeoutError, socketio.exceptions.SocketIOError) as exc:
                log.info("cascade: delivering reports failed (retried): %s", exc)
            except Exception:  # e.g. the database: kept pending, retried
                log.exception("cascade: delivering reports failed (retried)")
            await asyncio.sleep(RETRY_S)

    async def _deliver_run(self, client: socketio.AsyncClient, reports: Reports) -> None:
        """Until a batch fails: a report goes up as soon as it is stored, without waiting for
        the answer to the batch before it (up to WINDOW batches in flight). Each batch names
        the last report of the one before (`after`): the parent takes them in order or
        refuses the rest, and the next run starts again from the oldest pending report."""
        flying: dict[asyncio.Future[None], set[str]] = {}  # batch -> its report ids
        after: str | None = None
        # Whether the outbox may hold a report not sent yet: it is read only then (a report
        # stored, a batch's worth left over, the window full when one was stored, or every
        # PING_INTERVAL_S), not again after each batch sent or answered: that was ~4 reads
        # per report at the ward and again at the city, where every ballot's report passes.
        look = True
        try:
            while True:
                if reports.wake.is_set():
                    reports.wake.clear()
                    look = True
                rows = []
                if look and len(flying) < WINDOW:
                    sent: set[str] = set().union(*flying.values())
                    unsent = [r for r in await reports.pending(MAX_BATCH * (WINDOW + 1))
                              if r.id not in sent]
                    rows, look = unsent[:MAX_BATCH], len(unsent) > MAX_BATCH
                if rows:
                    batch = asyncio.ensure_future(self._send_reports(client, rows, after))
                    flying[batch] = {r.id for r in rows}
                    after = rows[-1].id
                    continue
                woken: asyncio.Future[Any] = asyncio.ensure_future(reports.wake.wait())
                done, _ = await asyncio.wait({woken, *flying}, timeout=PING_INTERVAL_S,
                                             return_when=asyncio.FIRST_COMPLETED)
                woken.cancel()
                if not done:  # quiet for a while: look anyway
                    look = True
                for finished in done & flying.keys():
                    del flying[finished]
                    finished.result()  # a failed batch ends the run
        except asyncio.CancelledError:  # the link is gone: so are the answers
            for pending in flying:
                pending.cancel()
            raise
        except BaseException:  # the rest settle (or fail) before anything is sent again
            if flying:
                await asyncio.wait(flying.keys())
            raise
        finally:
            for left in flying:  # their failures are this one's: retrieved, not logged
                left.add_done_callback(_retrieved)

    async def _send_reports(self, client: socketio.AsyncClient, rows: list[Any],
                            after: str | None = None) -> None:
        """A batch the parent refuses whole (a meeting it no longer offers, say) is sent
        again report by report: one it refuses alone is settled as refused, so it cannot
        hold back the others."""
        state = self.node.state
        assert state is not None
        reply = await client.call("report", {"reports": [report_wire(r) for r in rows],
                                             "after": after},
                                  namespace=NAMESPACE, timeout=10)
        if isinstance(reply, dict) and reply.get("ok") is True:
            result = reply.get("result")
            outcomes = result.get("outcomes") if isinstance(result, dict) else None
            await state.reports.settle([o for o in outcomes or [] if isinstance(o, dict)])
            return
        error = reply.get("error") if isinstance(reply, dict) else None
        code = error.get("code") if isinstance(error, dict) else None
        if code not in FINAL_REFUSALS:
            raise ConnectionError(f"parent refused the reports: {shown(reply)}")
        if len(rows) > 1:
            for row in rows:
                await self._send_reports(client, [row])
            raise ConnectionError("a batch was refused whole: the next ones go again")
        await state.reports.settle([{"id": rows[0].id, "state": "refused", "error": error}])
        if after is not None:
            raise ConnectionError("a report was refused: the next ones go again")
