"""The one path of every ``/node`` event a child sends, on the parent's side.

Linked? Within its budget (token bucket)? A valid payload (its strict schema)? Every meeting
key it names invites the child now (`MeetingDirectory.out_of_scope`)? Then the handler;
otherwise an error acknowledgement, and nothing changed. `link_op` is the one way a ``link``
request (from either end) reaches a meeting's link end.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol

from media import Cascade, LinkEnd, LinkTransport, TokenBucket
from server.cascade.directory import MeetingDirectory
from server.cascade.schemas import (
    LinkRequest,
    NodeError,
    P,
    ack_error,
    ack_ok,
    shown,
    validate,
)

log = logging.getLogger(__name__)

FLOOD_STRIKES = 50  # refused events before a flooding link is dropped
LOGGED_REFUSALS = 20  # per link, then every 1000th: a hostile child cannot flood the log
MAX_REFUSALS_KEPT = 50  # for the admin view


class InOrder:
    """Events of one kind from one link, handled one at a time in the order they arrived.
    `take` is called before the handler's first await: socket.io starts each event's
    handler in arrival order, and anything awaited after that may finish out of order."""

    def __init__(self) -> None:
        self._last: asyncio.Future[None] | None = None

    def take(self) -> Turn:
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        turn, self._last = Turn(self._last, mine), mine
        return turn


@dataclass
class Turn:
    before: asyncio.Future[None] | None  # the previous event's turn
    mine: asyncio.Future[None]

    async def wait(self) -> None:
        if self.before is not None and not self.before.done():
            await asyncio.wait({self.before})  # never cancels it, if we are cancelled

    def done(self) -> None:
        """The next one may go, once the one before this has gone (even if this one was
        cancelled while it waited)."""
        def release(_: object = None) -> None:
            if not self.mine.done():
                self.mine.set_result(None)
        if self.before is None or self.before.done():
            release()
        else:
            self.before.add_done_callback(release)


@dataclass
class ChildLink:
    """A linked child node, as its parent sees it."""

    sid: str
    unit: str
    bucket: TokenBucket
    transport: LinkTransport  # the link's one WebRTC transport, for all its meetings
    meetings: set[str] = field(default_factory=set)  # joined for media
    journals: set[str] = field(default_factory=set)  # meeting journals it follows
    below: set[str] = field(default_factory=set)  # units linked under it, as its pings say
    strikes: int = 0
    refused: int = 0  # events refused (schema, scope, limits)
    rtt_ms: float | None = None
    connected_at: float = field(default_factory=time.time)
    reports_in_order: InOrder = field(default_factory=InOrder)  # `report` batches
    last_report: str | None = None  # the last report id of the last batch taken in
    socket: Any = None  # its websocket's TCP socket (link_socket.py tuned it)


@dataclass(frozen=True)
class NodeEvent(Generic[P]):
    schema: type[P]
    handler: Callable[[ChildLink, P], Awaitable[Any]]
    ordered: bool = False  # handled one at a time per link, in arrival order (InOrder)
    ended_too: bool = False  # may name a meeting that ended and invites the child (reports)


class ChildHost(Protocol):
    """What the dispatcher needs of the parent node (server/cascade/link.py)."""

    children: dict[str, ChildLink]
    directory: MeetingDirectory
    refusals: list[str]

    async def leave(self, link: ChildLink, key: str, reason: str) -> None: ...

    def drop_sid(self, sid: str, reason: str) -> None: ...


class Dispatcher:
    def __init__(self, host: ChildHost) -> None:
        self.host = host
        self.events: dict[str, NodeEvent[Any]] = {}

    def register(self, name: str, schema: type[P],
                 handler: Callable[[ChildLink, P], Awaitable[Any]],
                 ordered: bool = False, ended_too: bool = False) -> None:
        schema.check_scoped()
        self.events[name] = NodeEvent(schema, handler, ordered, ended_too)

    async def dispatch(self, name: str, sid: str, data: Any) -> dict[str, Any]:
        event = self.events[name]
        link = self.host.children.get(sid)
        if link is None or not event.ordered:
            return await self._dispatch(event, name, sid, link, data)
        turn = link.reports_in_order.take()  # before any await: arrival order
        try:
            await turn.wait()
            return await self._dispatch(event, name, sid, link, data)
        finally:
            turn.done()

    async def _dispatch(self, event: NodeEvent[Any], name: str, sid: str,
                        link: ChildLink | None, data: Any) -> dict[str, Any]:
        host = self.host
        try:
            if link is None:
                raise NodeError("not_authenticated", "this connection is not a linked node")
            if not link.bucket.take():
                link.strikes += 1
                if link.strikes == FLOOD_STRIKES:
                    host.drop_sid(sid, "keeps flooding events")
                raise NodeError("rate_limited", "rate limit exceeded; slow down")
            payload = validate(event.schema, data)
            keys = payload.meeting_keys()
            outside = await host.directory.out_of_scope(link.unit, keys) if keys else set()
            if outside:
                for key in outside & link.meetings:  # an invitation withdrawn since the join
                    await host.leave(link, key, "no longer invited")
                if event.ended_too:  # a ballot cast before the end still reaches its owner
                    outside -= await host.directory.ended_inviting(link.unit, outside)
            if outside:
                raise NodeError("not_found", f"meeting {shown(min(outside))} is not offered "
                                             f"to {link.unit}")
            return ack_ok(await event.handler(link, payload))
        except NodeError as exc:
            self._note_refusal(link, name, exc)
            return ack_error(exc.code, exc.message)
        except Exception:
            log.exception("cascade: /node event %s from %s failed", name,
                          link.unit if link else sid)
            return ack_error("internal", "internal error; the event was not applied")

    def _note_refusal(self, link: ChildLink | None, name: str, exc: NodeError) -> None:
        """Logged (bounded per link) and kept for the admin view."""
        if link is None:
            return
        link.refused += 1
        message = f"refused {name} from {link.unit}: {exc.code}: {exc.message}"
        if link.refused <= LOGGED_REFUSALS or link.refused % 1000 == 0:
            log.warning("cascade: %s (%d refused on this link)", message, link.refused)
        if exc.code != "rate_limited":
            self.host.refusals = (self.host.refusals + [message])[-MAX_REFUSALS_KEPT:]


async def link_op(cascades: dict[str, Cascade], name: str, joined: set[str],
                  payload: LinkRequest) -> dict[str, Any]:
    """A validated `link` request for a meeting, to that meeting's link end."""
    if payload.meeting not in joined:
        raise NodeError("not_joined", f"meeting {payload.meeting} was not joined on this link")
    cascade = cascades.get(payload.meeting)
    end: LinkEnd | None = cascade.links.get(name) if cascade else None
    if end is None or end.closed:
        raise NodeError("not_joined", f"no link end for meeting {payload.meeting}")
    reply = await end.handle(payload.op, payload.data)
    if "error" in reply:
        raise NodeError("link_refused", str(reply["error"])[:200])
    return reply
