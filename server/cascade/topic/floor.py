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
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from aiohttp import web
from sqlalchemy import bindparam
from sqlalchemy import select as sa_select
from sqlmodel import col, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rooms import audit, procedure
from rooms.audit import AuditKind
from rooms.models import Meeting, MeetingStatus, Site, Unit, User
from rooms.procedure_models import FloorRequest, FloorStatus, ProcedureState
from rooms.remote_floor import CascadeRef, FloorOrigin, proxy_user, ref_get
from server.cascade.schemas import NodeError, validate
from server.cascade.topic.floor_apply import MirrorFloor, apply_owners_floor
from server.cascade.topic.floor_schemas import (
    MAX_JOURNALED,
    FloorAskData,
    FloorStateData,
    FloorWithdrawData,
)
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
ENTRY_BUDGET = MAX_DATA_BYTES - 4_000  # room for the holder and the envelope
_FINAL = (FloorStatus.done, FloorStatus.skipped, FloorStatus.withdrawn)
FLOOR_TRUST_S = 10.0  # how long a mirror uses the floor it applied last (names in it)


def install(app: web.Application, state: MeetingState) -> None:
    floor = CascadeFloor(app, state)
    state.register(Topic(REQUEST, FloorAskData, "up", receive=floor.receive_request))
    state.register(Topic(WITHDRAW, FloorWithdrawData, "up", receive=floor.receive_withdraw))
    state.register(Topic(STATE, FloorStateData, "down", apply=floor.apply_state, keeps=True,
                         covers=covers))
    app[keys.BUS].subscribe(FloorQueueChanged, floor.on_changed)


def covers(older: dict[str, Any], newer: dict[str, Any]) -> bool:
    """Whether the owner's newer floor state makes applying the older one needless: each is
    the whole floor (holder, statuses, grants, totals) of the requests it lists, but only of
    the latest MAX_JOURNALED within an entry's size (floor_state), so the newer one must
    list every request the older one did (one that finished and fell out of the newer list
    was journaled in its final state in the older: that one is applied)."""
    listed = {item["id"] for item in newer["requests"]}
    return all(item["id"] in listed for item in older["requests"])


# floor_state's statement, built once (at the owner on every change of its floor).
_STATE = (
    sa_select(select(ProcedureState.floor_request_id)
              .where(col(ProcedureState.meeting_id) == bindparam("meeting_id"))
              .scalar_subquery(),
              FloorRequest, User, col(Site.name), col(Unit.name), FloorOrigin)
    .outerjoin(User, col(User.id) == col(FloorRequest.user_id))
    .outerjoin(Site, col(Site.id) == col(FloorRequest.site_id))
    .outerjoin(Unit, col(Unit.id) == col(User.unit_id))
    .outerjoin(FloorOrigin, col(FloorOrigin.request_id) == col(FloorRequest.id))
    .where(col(FloorRequest.meeting_id) == bindparam("meeting_id"))
    .order_by(col(FloorRequest.id).desc()).limit(MAX_JOURNALED))


async def floor_state(s: AsyncSession, meeting_id: int, here: str) -> dict[str, Any]:
    """The owner's floor as journaled: its latest requests, every status (`here`: this
    node's unit, the origin of its own people's requests). One read on every change of the
    owner's floor: the requests joined with their people, sites, units and origin marks,
    and the holder (a get per request went to the database each time, then one read per
    table: six)."""
    found = await s.exec(_STATE, params={"meeting_id": meeting_id})  # type: ignore[call-overload]
    rows = list(reversed(found.all()))
    holder = rows[0][0] if rows else None  # (a holder is one of the requests)
    items = []
    for _, r, user, site_name, unit_of_user, mark in rows:
        if mark is not None:
            origin, remote, site, unit_name = mark.origin, mark.remote_id, mark.site, mark.unit
            person = int(user.username.rpartition("~")[2]) if user and \
                user.username.rpartition("~")[2].isdigit() else r.user_id
        else:
            origin, remote, person = here, r.id or 0, r.user_id
            site, unit_name = (site_name or "") if r.site_id else "", unit_of_user or ""
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
    return {"holder": holder, "requests": items}


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
        # meeting -> (when read, the floor after this node's last apply of the owner's): the
        # next apply reads nothing if the procedure's seq moved by that apply only (its rows
        # are this session's; names edited meanwhile are read again within FLOOR_TRUST_S).
        self._floors: dict[int, tuple[float, MirrorFloor]] = {}

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
        of a delegate's request to the owner's chair: two reads whatever the number of
        requests (the requests with their people, sites and units; the marks), three before
        and seven before that (copies, hold, marks, person, site, unit)."""
        rows = await s.exec(  # type: ignore[call-overload]  # four columns: SQLAlchemy's select
            sa_select(FloorRequest, col(User.full_name), col(Site.name), col(Unit.name))
            .outerjoin(FloorOrigin, col(FloorOrigin.request_id) == col(FloorRequest.id))
            .outerjoin(User, col(User.id) == col(FloorRequest.user_id))
            .outerjoin(Site, col(Site.id) == col(FloorRequest.site_id))
            .outerjoin(Unit, col(Unit.id) == col(User.unit_id))
            .where(col(FloorRequest.meeting_id) == meeting_id,
                   col(FloorRequest.status).in_([FloorStatus.queued, FloorStatus.withdrawn]),
                   col(FloorOrigin.request_id).is_(None))  # not a copy of another node's
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
        out: list[tuple[str, dict[str, Any]]] = []
        for r, name, site, unit in requests:
            assert r.id is not None
            mark = marks.get(f"esc:{r.id}")
            if held and mark is None and f"up:{r.id}" not in marks:
                continue  # kept here unless this node's chair escalates it
            if r.status == FloorStatus.queued and mark is None:
                out.append((REQUEST, {"request": r.id, "user": r.user_id, "name": name or "?",
                                      "site": site or "", "unit": unit or "",
                                      "for_site": r.for_site}))
                s.add(CascadeRef(meeting_id=meeting_id, ref=f"esc:{r.id}", local_id=1))
            elif r.status == FloorStatus.withdrawn and mark is not None and mark.local_id == 1:
                out.append((WITHDRAW, {"request": r.id}))
                mark.local_id = 2
                s.add(mark)
        return out

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
        """The owner's floor into this node's rows, stored with the entry in one commit
        (server/cascade/topic/floor_apply.py), then pushed to this node's tablets, under
        the meeting's lock: no change of this process comes between (one of another
        process makes the view newer than `seq`, and pushes its own)."""
        data = validate(FloorStateData, entry.data)
        live = self.app[LIVE]
        known = self._floors.pop(meeting_id, None)  # (dropped if this apply fails)
        if known is not None and time.monotonic() - known[0] > FLOOR_TRUST_S:
            known = None
        async with live.lock(meeting_id), self.app[keys.DB].session() as s:
            seq, emit, floor = await apply_owners_floor(
                s, meeting_id, self.unit, data, entry.keep, known[1] if known else None)
        self._floors[meeting_id] = (known[0] if known else time.monotonic(), floor)
        self._applied.add((meeting_id, seq))
        try:
            await live.emit(meeting_id, seq, [emit])
        finally:
            self._applied.discard((meeting_id, seq))
