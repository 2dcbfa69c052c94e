"""Floor requests across the cascade (issue 13, item 3; docs/cascade.md, "Floor across
nodes").

* `floor.request` / `floor.withdraw` (up): a request made on a mirror is escalated to the
  owner's chair at once, with the person's name, site and unit; the owner queues it as a
  request of a placeholder person (rooms/remote_floor.py) marked with its origin.
* `floor.state` (down): every change of the owner's floor (queue, holder, grants, skips,
  timers, spoken seconds) is journaled as the meeting's requests; each mirror writes them
  into its own rows (its own people's requests are the originals), so the same floor code
  shows the same queue, holder, timers and totals on every node, and the holder's node
  moves its video floor (FloorChanged, as for a local grant).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web
from pydantic import Field
from sqlmodel import col, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rooms import audit, procedure
from rooms.audit import AuditKind
from rooms.models import Meeting, MeetingStatus, Site, Unit, User, utcnow
from rooms.procedure_models import FloorRequest, FloorStatus
from rooms.remote_floor import (
    CascadeRef,
    FloorOrigin,
    origins,
    proxy_user,
    ref_get,
    ref_put,
    refs,
)
from server.cascade.schemas import NodeError, NodeSchema, validate
from server.cascade.topic.floor_sockets import HOLD
from server.cascade.topics import MAX_DATA_BYTES, Entry, Report, Topic, encode
from server.core import keys
from server.procedure.events import FloorQueueChanged
from server.procedure.keys import LIVE
from server.procedure.views import floor_emit

if TYPE_CHECKING:
    from server.cascade.state import MeetingState

log = logging.getLogger(__name__)
REQUEST, WITHDRAW, STATE = "floor.request", "floor.withdraw", "floor.state"
MAX_JOURNALED = 300  # the owner's latest requests in each floor.state entry
ENTRY_BUDGET = MAX_DATA_BYTES - 4_000  # room for the holder and the envelope
_FINAL = (FloorStatus.done, FloorStatus.skipped, FloorStatus.withdrawn)


class FloorAskData(NodeSchema):
    request: int = Field(ge=1)  # the request's id at its origin node
    user: int = Field(ge=1)
    name: str = Field(min_length=1, max_length=200)
    site: str = Field(default="", max_length=200)
    unit: str = Field(default="", max_length=200)
    for_site: bool = False


class FloorWithdrawData(NodeSchema):
    request: int = Field(ge=1)


class FloorItem(NodeSchema):
    id: int = Field(ge=1)  # the owner's request id
    origin: str = Field(min_length=1, max_length=64)
    remote: int = Field(ge=0)  # its id at the origin node
    user: int = Field(ge=1)  # the person's id at the origin node
    name: str = Field(max_length=200)
    site: str = Field(default="", max_length=200)
    unit: str = Field(default="", max_length=200)
    for_site: bool = False
    status: FloorStatus
    requested_at: str = Field(max_length=40)
    granted_at: str | None = Field(default=None, max_length=40)
    ended_at: str | None = Field(default=None, max_length=40)
    limit_seconds: int | None = Field(default=None, ge=1, le=3600)
    spoken_seconds: int = Field(default=0, ge=0)


class FloorStateData(NodeSchema):
    holder: int | None = Field(default=None, ge=1)
    requests: list[FloorItem] = Field(max_length=MAX_JOURNALED)


def install(app: web.Application, state: MeetingState) -> None:
    floor = CascadeFloor(app, state)
    state.register(Topic(REQUEST, FloorAskData, "up", receive=floor.receive_request))
    state.register(Topic(WITHDRAW, FloorWithdrawData, "up", receive=floor.receive_withdraw))
    state.register(Topic(STATE, FloorStateData, "down", apply=floor.apply_state))
    app[keys.BUS].subscribe(FloorQueueChanged, floor.on_changed)


def _time(value: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if value else None
    except ValueError:
        raise NodeError("invalid", f"not a time: {str(value)[:40]!r}") from None


async def floor_state(s: AsyncSession, meeting_id: int, here: str) -> dict[str, Any]:
    """The owner's floor as journaled: its latest requests, every status (`here`: this
    node's unit, the origin of its own people's requests)."""
    state = await procedure.read_state(s, meeting_id)
    rows = await s.exec(select(FloorRequest).where(FloorRequest.meeting_id == meeting_id)
                        .order_by(col(FloorRequest.id).desc()).limit(MAX_JOURNALED))
    requests = list(reversed(rows.all()))
    marks = await origins(s, [r.id for r in requests if r.id is not None])
    # People, sites and units in one query each (up to 300 requests, on every change of the
    # owner's floor: a get per request went to the database each time).
    users = {u.id: u for u in (await s.exec(select(User).where(
        col(User.id).in_({r.user_id for r in requests})))).all()} if requests else {}
    sites = await _names(Site.id, Site.name, s, {r.site_id for r in requests
                                                 if r.site_id and r.id not in marks})
    units = await _names(Unit.id, Unit.name, s, {u.unit_id for u in users.values()
                                                 if u.unit_id})
    items = []
    for r in requests:
        user = users.get(r.user_id)
        mark = marks.get(r.id)  # type: ignore[arg-type]
        if mark is not None:
            origin, remote, site, unit_name = mark.origin, mark.remote_id, mark.site, mark.unit
            person = int(user.username.rpartition("~")[2]) if user and \
                user.username.rpartition("~")[2].isdigit() else r.user_id
        else:
            origin, remote, person = here, r.id or 0, r.user_id
            site = sites.get(r.site_id, "") if r.site_id else ""
            unit_name = units.get(user.unit_id, "") if user and user.unit_id else ""
        items.append({
            "id": r.id, "origin": origin, "remote": remote, "user": person,
            "name": (user.full_name if user else "") or "?", "site": site,
            "unit": unit_name, "for_site": r.for_site, "status": r.status.value,
            "requested_at": r.requested_at.isoformat(),
            "granted_at": r.granted_at.isoformat() if r.granted_at else None,
            "ended_at": r.ended_at.isoformat() if r.ended_at else None,
            "limit_seconds": r.limit_seconds, "spoken_seconds": r.spoken_seconds})
    # Within an entry's size: the oldest finished requests go first (each was journaled
    # in its final state when that happened, so no node misses it).
    while len(encode(items)) > ENTRY_BUDGET:
        oldest = next((i for i, item in enumerate(items) if item["status"] in
                       {status.value for status in _FINAL}), None)
        if oldest is None:
            break
        items.pop(oldest)
    return {"holder": state.floor_request_id, "requests": items}


async def _names(key: Any, label: Any, s: AsyncSession, ids: set[int | None]) -> dict[int, str]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    rows = await s.exec(select(key, label).where(col(key).in_(wanted)))
    return {int(i): str(n) for i, n in rows.all()}


class CascadeFloor:
    def __init__(self, app: web.Application, state: MeetingState) -> None:
        self.app, self.state = app, state
        node = app[keys.SETTINGS].node
        self.unit = node.unit if node is not None else "local"
        self._escalating: defaultdict[int, asyncio.Lock] = defaultdict(asyncio.Lock)
        # (meeting, seq) of the changes made here by applying the owner's floor: nothing of
        # this node's people to send up in them, so no escalation check follows them (at
        # every mirror on every change of the owner's floor, it held `_escalating` and the
        # database while a delegate here asked to speak), unless the last check of that
        # meeting here failed or none ran yet: a request whose outbox commit failed still
        # goes up at the next change, whichever it is.
        self._applied: set[tuple[int, int]] = set()
        self._checked: set[int] = set()

    async def on_changed(self, event: FloorQueueChanged) -> None:
        if (event.meeting_id, event.seq) in self._applied and event.meeting_id in self._checked:
            return
        # One at a time per meeting: two changes in quick succession (a request and the
        # owner's floor state applied here) would both find a new request unmarked and
        # both insert its mark (an IntegrityError, logged with a traceback).
        async with self._escalating[event.meeting_id]:
            await self._on_changed(event)

    async def _on_changed(self, event: FloorQueueChanged) -> None:
        key = await self.state.key_of(event.meeting_id)  # known after the first change
        if key is None:
            return
        if self.state.owns(key):
            async with self.app[keys.DB].session() as s:
                data = await floor_state(s, event.meeting_id, self.unit)
            await self.state.publish(event.meeting_id, STATE, data)
            return
        try:
            await self._escalate(event.meeting_id)
        except BaseException:
            self._checked.discard(event.meeting_id)  # the next change checks again
            raise
        self._checked.add(event.meeting_id)

    async def _escalate(self, meeting_id: int) -> None:
        # The outbox's database (the same as the app's; a test may stall its commits).
        async with self.state.reports.db.session() as s:
            todo = await self._to_escalate(s, meeting_id)
            for topic, data in todo:  # in the outbox, committed with the marks; on its way
                # up beside that commit (the owner's chair waits for one commit here, the
                # request's, not two), and stored here before the delegate's ack, which
                # waits for this: whatever the link. If the commit fails, the request is
                # escalated again at the next change, and the owner queues it once.
                await self.state.report(meeting_id, topic, data, s, ahead=True)
            await s.commit()

    async def _to_escalate(self, s: AsyncSession, meeting_id: int
                           ) -> list[tuple[str, dict[str, Any]]]:
        """This node's people's new requests (and withdrawals of escalated ones). On the way
        of a delegate's request to the owner's chair: three reads whatever the number of
        requests (seven for one request before: copies, hold, marks, person, site, unit)."""
        rows = await s.exec(select(FloorRequest).outerjoin(
            FloorOrigin, col(FloorOrigin.request_id) == col(FloorRequest.id)).where(
            FloorRequest.meeting_id == meeting_id,
            col(FloorRequest.status).in_([FloorStatus.queued, FloorStatus.withdrawn]),
            col(FloorOrigin.request_id).is_(None))  # not a copy of another node's request
            .order_by(col(FloorRequest.id)))
        requests = list(rows.all())
        # This node's marks in one read (withdrawn ones pile up over a meeting): the hold (a
        # local discussion, floor_sockets), what was sent up, what its chair asked up; kept,
        # so that marking one again needs no query.
        marks = {m.ref: m for m in (await s.exec(select(CascadeRef).where(
            CascadeRef.meeting_id == meeting_id,
            or_(col(CascadeRef.ref) == HOLD, col(CascadeRef.ref).startswith("esc:"),
                col(CascadeRef.ref).startswith("up:"))))).all()}
        hold = marks.get(HOLD)
        held = hold is not None and hold.local_id == 1
        todo: list[tuple[FloorRequest, CascadeRef | None]] = []
        for r in requests:
            mark = marks.get(f"esc:{r.id}")
            if held and mark is None and f"up:{r.id}" not in marks:
                continue  # kept here unless this node's chair escalates it
            if (r.status == FloorStatus.queued and mark is None) or \
                    (r.status == FloorStatus.withdrawn and mark is not None
                     and mark.local_id == 1):
                todo.append((r, mark))
        names = await self._who(s, [r.id for r, mark in todo if mark is None])
        out: list[tuple[str, dict[str, Any]]] = []
        for r, mark in todo:
            assert r.id is not None
            if mark is None:
                name, site, unit = names.get(r.id, ("?", "", ""))
                out.append((REQUEST, {"request": r.id, "user": r.user_id, "name": name,
                                      "site": site, "unit": unit, "for_site": r.for_site}))
                s.add(CascadeRef(meeting_id=meeting_id, ref=f"esc:{r.id}", local_id=1))
            else:
                out.append((WITHDRAW, {"request": r.id}))
                mark.local_id = 2
                s.add(mark)
        return out

    @staticmethod
    async def _who(s: AsyncSession, request_ids: list[int | None]
                   ) -> dict[int, tuple[str, str, str]]:
        """(name, site, unit) of each request's person, in one read."""
        if not request_ids:
            return {}
        rows = await s.exec(select(FloorRequest.id, User.full_name, Site.name, Unit.name)
                            .outerjoin(User, col(User.id) == col(FloorRequest.user_id))
                            .outerjoin(Site, col(Site.id) == col(FloorRequest.site_id))
                            .outerjoin(Unit, col(Unit.id) == col(User.unit_id))
                            .where(col(FloorRequest.id).in_(request_ids)))
        return {i: (name or "?", site or "", unit or "")
                for i, name, site, unit in rows.all() if i is not None}

    # --- at the owner -------------------------------------------------------------------

    async def receive_request(self, meeting_id: int, via: str, report: Report) -> dict[str, Any]:
        """Who may report it was checked on the way here, once each: the child `via` by the
        dispatcher (the meeting invites it: its scope), the origin by `Reports.receive`
        (itself, or a node below that the meeting invites)."""
        data = validate(FloorAskData, report.data)
        live = self.app[LIVE]
        async with live.lock(meeting_id), self.app[keys.DB].session() as s:
            meeting = await s.get(Meeting, meeting_id)
            if meeting is None or meeting.status != MeetingStatus.open:
                raise NodeError("conflict", "the meeting is not open")
            ref = f"floor:{report.origin}:{data.request}"
            known = await ref_get(s, meeting_id, ref)
            if known is not None:
                return {"request": known}
            state = await procedure.lock(s, meeting_id)
            person = await proxy_user(s, report.origin, data.user, data.name)
            request = FloorRequest(meeting_id=meeting_id, agenda_item_id=state.current_item_id,
                                   user_id=person.id,  # type: ignore[arg-type]
                                   for_site=data.for_site, status=FloorStatus.queued)
            s.add(request)
            await s.flush()
            assert request.id is not None
            s.add(FloorOrigin(request_id=request.id, origin=report.origin,
                              remote_id=data.request, site=data.site, unit=data.unit))
            s.add(CascadeRef(meeting_id=meeting_id, ref=ref, local_id=request.id))  # absent
            await audit.record(s, meeting_id, None, AuditKind.floor_requested, {
                "request_id": request.id, "origin": report.origin, "via": via,
                "remote_id": data.request, "name": data.name, "site": data.site,
                "unit": data.unit, "item_id": request.agenda_item_id})
            emit, seq = await floor_emit(s, state), state.seq
            await s.commit()
        await live.emit(meeting_id, seq, [emit])
        return {"request": request.id}

    async def receive_withdraw(self, meeting_id: int, via: str, report: Report
                               ) -> dict[str, Any]:
        data = validate(FloorWithdrawData, report.data)
        live = self.app[LIVE]
        async with live.lock(meeting_id), self.app[keys.DB].session() as s:
            known = await ref_get(s, meeting_id, f"floor:{report.origin}:{data.request}")
            request = await s.get(FloorRequest, known) if known is not None else None
            if request is None:
                raise NodeError("not_found", f"floor request {data.request} not found")
            if request.status != FloorStatus.queued:
                return {"request": request.id, "status": request.status.value}
            state = await procedure.lock(s, meeting_id)
            request.status = FloorStatus.withdrawn
            s.add(request)
            await audit.record(s, meeting_id, None, AuditKind.floor_withdrawn, {
                "request_id": request.id, "origin": report.origin, "via": via})
            emit, seq = await floor_emit(s, state), state.seq
            await s.commit()
        await live.emit(meeting_id, seq, [emit])
        return {"request": request.id, "status": "withdrawn"}

    # --- at a mirror --------------------------------------------------------------------

    async def apply_state(self, meeting_id: int, entry: Entry) -> None:
        data = validate(FloorStateData, entry.data)
        live = self.app[LIVE]
        async with live.lock(meeting_id), self.app[keys.DB].session() as s:
            # Read before procedure.lock: its UPDATE takes SQLite's one writer lock until the
            # commit, and the event loop runs other tasks between this transaction's
            # statements (this node's journal, outbox and delegates wait for that lock). The
            # reads hold if no other process changed the meeting's procedure meanwhile (its
            # seq moved by ours only); else they are made again under the lock.
            seen = (await procedure.read_state(s, meeting_id)).seq
            rows, copies, held = await self._current(s, meeting_id)
            state = await procedure.lock(s, meeting_id)
            if state.seq != seen + 1:
                rows, copies, held = await self._current(s, meeting_id)
            holder: int | None = None
            for item in data.requests:
                local = await self._local_row(s, meeting_id, item, rows, copies)
                if local is None:
                    continue
                if local.status == FloorStatus.withdrawn and item.status == FloorStatus.queued:
                    continue  # withdrawn here; the withdrawal is on its way up
                local.status = item.status
                local.granted_at, local.ended_at = _time(item.granted_at), _time(item.ended_at)
                local.limit_seconds, local.spoken_seconds = item.limit_seconds, item.spoken_seconds
                s.add(local)
                if item.id == data.holder and item.status == FloorStatus.speaking:
                    holder = local.id
            if held:
                holder = state.floor_request_id  # a local discussion: this node's chair decides
            if state.floor_request_id != holder:
                current = rows.get(state.floor_request_id) if state.floor_request_id else None
                if current is not None and current.status == FloorStatus.speaking:
                    current.status = FloorStatus.done  # the owner's floor decides
                    s.add(current)
                state.floor_request_id = holder
                s.add(state)
            seq = state.seq
            await s.commit()
            # The view pushed, read after the commit (without the writer lock), under the
            # meeting's lock: no change of this process comes between (one of another
            # process makes it newer than `seq`, and pushes its own).
            emit = await floor_emit(s, state)
        self._applied.add((meeting_id, seq))
        try:
            await live.emit(meeting_id, seq, [emit])
        finally:
            self._applied.discard((meeting_id, seq))

    @staticmethod
    async def _current(s: AsyncSession, meeting_id: int
                       ) -> tuple[dict[int | None, FloorRequest], dict[str, int], bool]:
        """The meeting's requests by id, the owner's ids of this node's copies, whether this
        node holds its requests: one query each, not one or two per item (this runs at
        every node on each change of the owner's floor). The rows are kept here: a session
        holds loaded rows only while something else does (a get went to the database)."""
        rows = {r.id: r for r in (await s.exec(
            select(FloorRequest).where(FloorRequest.meeting_id == meeting_id)
            .execution_options(populate_existing=True))).all()}
        return rows, await refs(s, meeting_id, "copy:"), await ref_get(s, meeting_id, HOLD) == 1

    async def _local_row(self, s: AsyncSession, meeting_id: int, item: FloorItem,
                         rows: dict[int | None, FloorRequest], copies: dict[str, int]
                         ) -> FloorRequest | None:
        """This node's row for the owner's `item` (`rows`: the meeting's, by id), made for
        another node's person the first time."""
        if item.origin == self.unit:  # this node's person: the original request
            return rows.get(item.remote)
        ref = f"copy:{item.id}"
        known = copies.get(ref)
        row = rows.get(known) if known is not None else None
        if row is not None:
            return row
        person = await proxy_user(s, item.origin, item.user, item.name)
        row = FloorRequest(meeting_id=meeting_id, user_id=person.id,  # type: ignore[arg-type]
                           for_site=item.for_site, status=item.status,
                           requested_at=_time(item.requested_at) or utcnow())
        s.add(row)
        await s.flush()
        assert row.id is not None
        rows[row.id] = row
        s.add(FloorOrigin(request_id=row.id, origin=item.origin, remote_id=item.remote,
                          site=item.site, unit=item.unit))
        await ref_put(s, meeting_id, ref, row.id)
        return row
