"""Cascade node links: a child node (ward, city) keeps one signaling link to its
parent (city, province) and relays meetings' media over media/link.py. (Over 400 lines: the
parent's side of the whole ``/node`` protocol is one class, `NodeCascade`; its checks are in
dispatch.py, payloads in schemas.py, the child's side in parent_link.py.)

Signaling is socket.io on the namespace ``/node``:

* The child connects with ``auth = {"unit", "token", "path"}``. ``token`` is
  ``<unix time>.<hex HMAC-SHA256(secret, "<unit>|<unix time>")>`` (server/cascade/tokens.py;
  the secret itself never crosses the wire; TLS in production). ``path`` is the child's
  own unit.
* The parent refuses, with a logged reason and no state change: an unknown
  unit, a revoked or wrong credential, a stale token, a child whose unit is
  on the parent's own path to the root (a loop in configured parents), or a
  unit that already has a live link.
* ``hello`` (child -> parent) returns the parent's path to the root; the
  child refuses a parent whose path contains itself.
* ``join`` {meeting} (child -> parent): both ends create their link end for
  that meeting (a `media.link.LinkEnd` in each router).
* ``link`` {meeting, op, data} (either way, with an ack): one request of the
  media link protocol (catalog / pull / offer / release), answered by the
  other end's `LinkEnd.handle`.
* ``ping`` (child -> parent): round-trip time for the admin view.

* ``meetings`` / ``headcounts`` (child -> parent): what the parent offers this child;
  the child's subtree's attendance per meeting (within the seats each meeting allots it).
* ``journal`` (child -> parent: entries after a seq, and follow the rest; parent -> child:
  entries pushed as they are appended) and ``report`` (child -> parent: the child's pending
  reports): a meeting's state beyond media (server/cascade/journal.py, reports.py).

Every event on ``/node`` goes through one dispatcher (server/cascade/dispatch.py, and
`ParentLink._on_link` on the child's side, server/cascade/parent_link.py): a strict schema per event (`NodeSchema`, server/cascade/schemas.py), then
the child's scope, checked against the invitations at the moment the event arrives: every
meeting key a payload names (fields typed `MeetingKey`) must be a live meeting that invites
the child now (`MeetingDirectory.out_of_scope`). Acknowledgements are
``{"ok": true, "result": ...}`` or ``{"ok": false, "error": {"code", "message"}}``; a
refused event changes nothing, and a withdrawn invitation also removes the child's link end
for that meeting.

Every request from a child goes through a token bucket; a link that floods is
refused event by event, and disconnected once it keeps flooding. A parent's
requests to a child have a timeout (LinkLimits.request_timeout_s), so a slow
child never blocks the parent. The child reconnects with backoff (0.25 s
doubling, capped at 1 s) and, once connected, rejoins its meetings and
re-pulls what its subscribers were watching.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import socketio

from media import SFU, Cascade, LinkLimits, TokenBucket, link_usage
from server.cascade.directory import MeetingDirectory
from server.cascade.dispatch import (
    MAX_REFUSALS_KEPT,
    ChildLink,
    Dispatcher,
    NodeEvent,
    link_op,
)
from server.cascade.link_socket import rto_min_of, tune
from server.cascade.parent_link import ParentLink
from server.cascade.schemas import (
    NAMESPACE,
    Empty,
    Headcounts,
    Join,
    JournalPull,
    LinkRequest,
    NodeError,
    P,
    Ping,
    ReportBatch,
    shown,
    unwrap,
)
from server.cascade.state import MeetingState
from server.cascade.tokens import check_token
from server.core.settings import NodeConfigError, NodeSettings
from server.core.socket_guard import refused

log = logging.getLogger(__name__)

MAX_MEETINGS_PER_LINK = 256
SCOPE_SWEEP_S = 2.0  # how soon a withdrawn invitation closes a joined meeting's link end


def journal_room(key: str) -> str:
    return f"journal:{key}"


class NodeCascade:
    """The cascade of one node: its meetings' link ends, its children (as a
    parent) and its link to its parent (as a child)."""

    def __init__(self, settings: NodeSettings, sfu: SFU, limits: LinkLimits | None = None,
                 child_rate_per_s: float = 200.0, child_burst: float = 400.0,
                 directory: MeetingDirectory | None = None) -> None:
        self.settings = settings
        self.sfu = sfu
        self.limits = limits or LinkLimits()
        self.directory = directory or MeetingDirectory()
        self.cascades: dict[str, Cascade] = {}  # link key -> cascade
        self.routers: dict[str, str] = {}  # link key -> local router id (default: the key)
        self._joins: set[asyncio.Future[None]] = set()
        self._disconnects: set[asyncio.Future[None]] = set()
        self.credentials: dict[str, str] = dict(settings.children)
        self.children: dict[str, ChildLink] = {}  # sid -> link
        self.path: list[str] = [settings.unit]  # to the root, learned from the parent
        self.refusals: list[str] = []
        self._rate = (child_rate_per_s, child_burst)
        self.sio: socketio.AsyncServer | None = None
        self.parent: ParentLink | None = None
        self.dispatcher = Dispatcher(self)
        self._sweeper: asyncio.Future[None] | None = None
        self.state: MeetingState | None = None  # meeting state beyond media (node.setup)
        # Whether this process's journal knows every entry this node has (its `last` per
        # meeting, in memory): true with one process per node; with several (Redis) another
        # may have appended or stored entries, so pulls read the table (node.setup).
        self.journal_in_memory = True

    @property
    def events(self) -> dict[str, NodeEvent[Any]]:
        """The registered /node events (name -> schema, handler)."""
        return self.dispatcher.events

    # -- meetings ------------------------------------------------------------------
    def cascade(self, meeting: str) -> Cascade:
        found = self.cascades.get(meeting)
        if found is None or found.router.closed:
            router = self.sfu.router(self.routers.get(meeting, meeting))
            found = self.cascades[meeting] = Cascade(router, self.settings.unit, self.limits)
        return found

    def owns(self, key: str) -> bool:
        return key.startswith(f"{self.settings.unit}/")

    def open(self, key: str, router_id: str) -> Cascade:
        """The cascade of a local meeting; a meeting owned upstream is also joined on
        the parent link (in the background: a child never waits on its parent here)."""
        self.routers[key] = router_id
        cascade = self.cascade(key)
        parent = self.parent
        if parent is not None and not self.owns(key) and key not in parent.meetings:
            task = asyncio.ensure_future(parent.join(key))
            self._joins.add(task)
            task.add_done_callback(self._joined)
        return cascade

    def _joined(self, task: asyncio.Future[None]) -> None:
        self._joins.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("cascade: joining upstream failed (retried on reconnect): %s",
                        task.exception())

    async def close(self) -> None:
        for task in list(self._joins):
            task.cancel()
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        if self.parent is not None:
            await self.parent.stop()
        for cascade in list(self.cascades.values()):
            await cascade.close()

    # -- admin --------------------------------------------------------------------------
    def rotate(self, unit: str, secret: str) -> None:
        """New credential for a child unit; its live link must reconnect with it."""
        if len(secret) < 16:
            raise NodeConfigError("a node secret needs 16+ characters")
        self.credentials[unit] = secret
        self._drop_unit(unit, "credential rotated")

    def revoke(self, unit: str) -> None:
        self.credentials.pop(unit, None)
        self._drop_unit(unit, "credential revoked")

    def drop_sid(self, sid: str, reason: str) -> None:
        link = self.children.get(sid)
        if link is not None and self.sio is not None:
            log.warning("cascade: dropping link of %s: %s", link.unit, reason)
            self._disconnect(sid)

    def _disconnect(self, sid: str) -> None:
        assert self.sio is not None
        task = asyncio.ensure_future(self.sio.disconnect(sid, namespace=NAMESPACE))
        self._disconnects.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(self._disconnects.discard)

    def _drop_unit(self, unit: str, reason: str) -> None:
        for link in list(self.children.values()):
            if link.unit == unit and self.sio is not None:
                log.warning("cascade: dropping link of %s: %s", unit, reason)
                self._disconnect(link.sid)

    def view(self) -> dict[str, Any]:
        """Admin view: this node, its parent link and child links with RTT,
        bitrate and the streams each carries."""
        def streams(name: str) -> dict[str, Any]:
            return link_usage(self.cascades.values(), name)

        parent = None
        if self.parent is not None:
            parent = {"url": self.settings.parent_url, "unit": self.parent.parent_unit,
                      "state": self.parent.state, "rtt_ms": self.parent.rtt_ms,
                      "reconnects": self.parent.reconnects,
                      "tcp_rto_min_ms": rto_min_of(self.parent.socket),
                      **(streams(self.parent.parent_unit) if self.parent.parent_unit else {})}
        children = [{"unit": c.unit, "state": "connected", "rtt_ms": c.rtt_ms,
                     "tcp_rto_min_ms": rto_min_of(c.socket),
                     "meetings": sorted(c.meetings), **streams(c.unit)}
                    for c in self.children.values()]
        known = sorted(set(self.credentials) - {c.unit for c in self.children.values()})
        children += [{"unit": u, "state": "disconnected"} for u in known]
        return {"unit": self.settings.unit, "path": self.path, "parent": parent,
                "children": children, "refusals": self.refusals[-20:]}

    # -- parent side: the /node namespace ----------------------------------------------------
    def attach(self, sio: socketio.AsyncServer) -> None:
        self.sio = sio
        sio.on("connect", self._on_connect, namespace=NAMESPACE)
        sio.on("disconnect", self._on_disconnect, namespace=NAMESPACE)
        self._event("hello", Empty, self._on_hello)
        self._event("ping", Ping, self._on_ping)
        self._event("meetings", Empty, self._on_meetings)
        self._event("join", Join, self._on_join)
        self._event("link", LinkRequest, self._on_link)
        self._event("headcounts", Headcounts, self._on_headcounts)
        self._event("journal", JournalPull, self._on_journal)
        self._event("report", ReportBatch, self._on_report, ordered=True, ended_too=True)

    def _event(self, name: str, schema: type[P],
               handler: Callable[[ChildLink, P], Awaitable[Any]], ordered: bool = False,
               ended_too: bool = False) -> None:
        """Every /node event is registered here, so every one goes through the dispatcher."""
        assert self.sio is not None
        self.dispatcher.register(name, schema, handler, ordered, ended_too)

        async def dispatch(sid: str, data: Any = None) -> dict[str, Any]:
            return await self.dispatcher.dispatch(name, sid, data)
        self.sio.on(name, dispatch, namespace=NAMESPACE)

    async def leave(self, link: ChildLink, key: str, reason: str) -> None:
        """The child may no longer act on this meeting: drop its link end here, and stop
        pushing the meeting's journal to it."""
        link.meetings.discard(key)
        if key in link.journals and self.sio is not None:
            link.journals.discard(key)
            await self.sio.leave_room(link.sid, journal_room(key), namespace=NAMESPACE)
        cascade = self.cascades.get(key)
        if cascade is not None and link.unit in cascade.links:
            log.warning("cascade: closing %s's link end of %s: %s", link.unit, key, reason)
            await cascade.remove_link(link.unit)

    async def sweep_scope(self) -> None:
        """Close child link ends of meetings that no longer invite the child (or ended):
        media already flowing stops, not only the next request."""
        links = [link for link in self.children.values() if link.meetings or link.journals]
        asked: dict[str, set[str]] = {}
        for link in links:  # one read for all of them (a city has 15 wards)
            asked.setdefault(link.unit, set()).update(link.meetings | link.journals)
        outside = await self.directory.out_of_scope_each(asked) if asked else {}
        for link in links:
            for key in sorted(outside.get(link.unit, set()) & (link.meetings | link.journals)):
                await self.leave(link, key, "no longer invited")

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SCOPE_SWEEP_S)
            try:
                await self.sweep_scope()
            except Exception:
                log.exception("cascade: checking child links' meetings failed")

    def _refuse(self, reason: str, unit: Any = None, code: str = "not_authenticated") -> None:
        message = f"refused node link from {shown(unit)}: {reason}"
        log.warning("cascade: %s", message)
        self.refusals = (self.refusals + [message])[-MAX_REFUSALS_KEPT:]
        raise refused(code, reason)

    async def _on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        try:
            self._check_credentials(auth)
        except socketio.exceptions.ConnectionRefusedError:
            raise
        except Exception:  # never a hanging connection, whatever was sent
            log.exception("cascade: checking a node's credentials failed")
            self._refuse("internal error", code="internal")
        unit = auth["unit"]
        transport = self.sfu.link_transport(
            parent=True, on_failed=lambda: self.drop_sid(sid, "media transport lost"))
        request = environ.get("aiohttp.request")  # engineio's aiohttp driver
        sock = request.transport.get_extra_info("socket") if request is not None \
            and request.transport is not None else None
        tune(sock, self.settings.link_rto_min_ms)  # pushes down to it are lone segments
        self.children[sid] = ChildLink(sid, unit, TokenBucket(*self._rate), transport,
                                       socket=sock)
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.ensure_future(self._sweep_forever())
        log.info("cascade: child %s linked", unit)

    def _check_credentials(self, auth: Any) -> None:
        """Refuses (ConnectionRefusedError, logged once) unless `auth` is a live child's."""
        if not isinstance(auth, dict):
            self._refuse("no credentials")
        unit, token = auth.get("unit"), auth.get("token")
        if not isinstance(unit, str) or not unit:
            self._refuse("no unit", unit)
        secret = self.credentials.get(unit)
        if secret is None:
            self._refuse("unit is not a child of this node (or was revoked)", unit)
        assert secret is not None
        reason = check_token(unit, token, secret)
        if reason is not None:
            self._refuse(reason, unit)
        if unit in self.path:
            self._refuse(f"loop: {unit} is on this node's path to the root {self.path}", unit,
                         "forbidden")
        if any(c.unit == unit for c in self.children.values()):
            self._refuse("this unit already has a live link", unit, "conflict")

    async def _on_disconnect(self, sid: str, *_: Any) -> None:
        link = self.children.pop(sid, None)
        if link is None:
            return
        log.info("cascade: child %s unlinked", link.unit)
        try:
            await self.directory.report(link.unit, [])  # its people are not here any more
        except Exception:
            log.exception("cascade: forgetting %s's headcounts failed", link.unit)
        for meeting in link.meetings:
            cascade = self.cascades.get(meeting)
            if cascade is not None:
                await cascade.remove_link(link.unit)
        await link.transport.close()

    async def _on_hello(self, link: ChildLink, payload: Empty) -> dict[str, Any]:
        return {"unit": self.settings.unit, "path": self.path}

    async def _on_ping(self, link: ChildLink, payload: Ping) -> dict[str, Any]:
        if payload.rtt_ms is not None:
            link.rtt_ms = payload.rtt_ms  # as the child measured it on its last ping
        link.below = set(payload.below)
        return {"t": datetime.now(UTC).isoformat()}

    async def _on_meetings(self, link: ChildLink, payload: Empty) -> dict[str, Any]:
        """What is offered to the child and, for each of those meetings, the last seq of its
        journal here (`journals`, from memory): the child pulls only a journal it is behind
        in, so a child missing nothing costs no read of the journal (was: a pull of every
        meeting, each a scope read and a read of the journal, every PING_INTERVAL_S)."""
        offered = await self.directory.offered(link.unit)
        answer: dict[str, Any] = {"meetings": offered}
        if self.state is not None and self.journal_in_memory:
            journal = self.state.journal
            answer["journals"] = {m["key"]: await journal.last(m["key"]) for m in offered}
        return answer

    async def _on_headcounts(self, link: ChildLink, payload: Headcounts) -> dict[str, Any]:
        await self.directory.report(link.unit, list(payload.counts))
        return {"accepted": len(payload.counts)}

    async def _on_journal(self, link: ChildLink, payload: JournalPull) -> dict[str, Any]:
        state = self._state()
        journal = state.journal
        entries: list[dict[str, Any]]
        if self.journal_in_memory and payload.after >= await journal.last(payload.meeting):
            entries, more = [], False  # nothing new: answered without reading the journal
        else:
            entries, more = await journal.since(payload.meeting, payload.after)
        if payload.meeting not in link.journals:
            assert self.sio is not None
            await self.sio.enter_room(link.sid, journal_room(payload.meeting),
                                      namespace=NAMESPACE)
            link.journals.add(payload.meeting)
        return {"entries": entries, "more": more}

    async def _on_report(self, link: ChildLink, payload: ReportBatch) -> dict[str, Any]:
        """Batches arrive pipelined (several in flight, ParentLink._deliver) and are taken in
        arrival order; each names the last report of the batch sent before it on this link,
        so one refused (or lost) in between stops the ones after it: the child sends them
        again, in order."""
        state = self._state()
        if payload.after is not None and payload.after != link.last_report:
            raise NodeError("out_of_order", "the batch before this one was not taken in; "
                                            "send again from the oldest pending report")
        outcomes = [await state.reports.receive(link.unit, item.model_dump())
                    for item in payload.reports]
        link.last_report = payload.reports[-1].id
        return {"outcomes": outcomes}

    def _state(self) -> MeetingState:
        if self.state is None:
            raise NodeError("not_found", "this node does not relay meeting state")
        return self.state

    async def offers_changed(self) -> None:
        """Tell the children (any process's: socket.io's manager carries it) that what is
        offered to them may have changed: each asks for its meetings at once instead of at
        its next ping, up to PING_INTERVAL_S later at every level of the tree."""
        if self.sio is not None:
            await self.sio.emit("offers", {}, namespace=NAMESPACE)

    async def push_journal(self, key: str, entries: list[dict[str, Any]]) -> None:
        """To the children following this meeting's journal (any process: socket.io's
        manager carries it to the one holding the child's socket)."""
        if self.sio is not None:
            await self.sio.emit("journal", {"meeting": key, "entries": entries},
                                room=journal_room(key), namespace=NAMESPACE)

    def reachable(self) -> set[str]:
        """This node and the nodes linked under it now."""
        found = {self.settings.unit}
        for link in self.children.values():
            found |= {link.unit} | link.below
        return found

    async def _on_join(self, link: ChildLink, payload: Join) -> dict[str, Any]:
        meeting = payload.meeting
        if meeting not in link.meetings and len(link.meetings) >= MAX_MEETINGS_PER_LINK:
            raise NodeError("too_many", f"at most {MAX_MEETINGS_PER_LINK} meetings per link")
        router_id = await self.directory.router_for(meeting)
        if router_id is None:
            raise NodeError("not_found", f"meeting {meeting} is not live here")
        cascade = self.open(meeting, router_id)
        end = cascade.links.get(link.unit)
        if end is None or end.closed:
            cascade.add_link(link.unit, self._child_request(link.sid, meeting),
                             transport=link.transport)
        link.meetings.add(meeting)
        return {"meeting": meeting}

    def _child_request(self, sid: str, meeting: str) -> Any:
        async def request(op: str, data: dict[str, Any]) -> dict[str, Any]:
            assert self.sio is not None
            try:
                reply = await self.sio.call("link", {"meeting": meeting, "op": op, "data": data},
                                            to=sid, namespace=NAMESPACE,
                                            timeout=self.limits.request_timeout_s)
            except (socketio.exceptions.TimeoutError, socketio.exceptions.SocketIOError) as exc:
                raise ConnectionError(f"child link: {exc}") from None
            return unwrap(reply)
        return request

    async def _on_link(self, link: ChildLink, payload: LinkRequest) -> dict[str, Any]:
        return await link_op(self.cascades, link.unit, link.meetings, payload)

    # -- child side ----------------------------------------------------------------------------
    def start_parent_link(self) -> ParentLink | None:
        if not self.settings.parent_url or not self.settings.secret:
            return None
        self.parent = ParentLink(self)
        self.parent.start()
        return self.parent

