"""A mirror applies the owner's floor (`floor.state`, docs/cascade.md, "Floor across
nodes"). That runs on every change of the owner's floor at every node of the tree, so it is
one transaction of a handful of statements whatever the number of requests: two reads (the
meeting's requests with their people, sites, items and origins, and the procedure's seq;
this node's copy marks and hold; none when the floor this node applied last is still what
its procedure's seq says), procedure.lock's UPDATE, the rows that changed, the journal entry
stored and marked applied (`Entry.keep`), one commit. The view pushed to the
node's tablets is built from what was applied (`rooms.floor.view_of`), not read back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, update
from sqlalchemy import select as sa_select
from sqlmodel import col, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rooms import procedure
from rooms.floor import Names, name_row, view_of
from rooms.models import Site, User, utcnow
from rooms.procedure_models import AgendaItem, FloorRequest, FloorStatus, ProcedureState
from rooms.remote_floor import CascadeRef, FloorOrigin, proxy_user
from server.cascade.schemas import NodeError
from server.cascade.topic.floor_schemas import FloorItem, FloorStateData
from server.cascade.topic.floor_sockets import HOLD
from server.cascade.topics import Keep
from server.procedure.views import Emit

COPY = "copy:"  # CascadeRef "copy:<owner's id>": this node's row for another node's person


def parse_time(value: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if value else None
    except ValueError:
        raise NodeError("invalid", f"not a time: {str(value)[:40]!r}") from None


async def apply_owners_floor(s: AsyncSession, meeting_id: int, unit: str,
                             data: FloorStateData, keep: Keep | None,
                             known: MirrorFloor | None = None
                             ) -> tuple[int, Emit, MirrorFloor]:
    """The owner's floor written into this node's rows (`unit`: this node), committed with
    the journal entry (`keep`); returns the change's seq, the view to push and the floor as
    it now is (`known` to the next apply).

    The reads come before procedure.lock: its UPDATE takes SQLite's one writer lock until
    the commit, and the event loop runs other tasks between this transaction's statements
    (this node's journal, outbox and delegates wait for that lock). They hold if nothing
    else changed the meeting's procedure meanwhile (its seq moved by ours only); else they
    are made again under the lock. `known` (the floor after this node's last apply of the
    owner's, at that change's seq) is used instead of reading when the seq says nothing
    changed the meeting's procedure since: no read at all."""
    floor = known if known is not None else await MirrorFloor.read(s, meeting_id)
    state = await procedure.lock(s, meeting_id)
    if state.seq != floor.seq + 1:
        floor = await MirrorFloor.read(s, meeting_id)
    holder: int | None = None
    for item in data.requests:
        local = await floor.row_for(s, meeting_id, unit, item)
        if local is None:
            continue
        if local.status == FloorStatus.withdrawn and item.status == FloorStatus.queued:
            continue  # withdrawn here; the withdrawal is on its way up
        # Set, and written (the session's flush) only where a value differs.
        local.status = item.status
        local.granted_at, local.ended_at = parse_time(item.granted_at), parse_time(item.ended_at)
        local.limit_seconds, local.spoken_seconds = item.limit_seconds, item.spoken_seconds
        s.add(local)
        if item.id == data.holder and item.status == FloorStatus.speaking:
            holder = local.id
    if floor.held:
        holder = state.floor_request_id  # a local discussion: this node's chair decides
    if state.floor_request_id != holder:
        current = floor.rows.get(state.floor_request_id) if state.floor_request_id else None
        if current is not None and current.status == FloorStatus.speaking:
            current.status = FloorStatus.done  # the owner's floor decides
            s.add(current)
        state.floor_request_id = holder
        s.add(state)
    if keep is not None:
        await keep(s)
    await s.commit()
    floor.seq = state.seq
    return state.seq, floor.emit(state.floor_request_id), floor


# MirrorFloor.read's two statements, built once (at every mirror on every change of the
# owner's floor, building them cost about as much CPU as a statement's round trip).
_REQUESTS = (
    sa_select(col(ProcedureState.seq), FloorRequest, col(User.full_name), col(Site.name),
              col(AgendaItem.title), FloorOrigin)
    .select_from(ProcedureState)
    .outerjoin(FloorRequest, col(FloorRequest.meeting_id) == ProcedureState.meeting_id)
    .outerjoin(User, col(User.id) == col(FloorRequest.user_id))
    .outerjoin(Site, col(Site.id) == col(FloorRequest.site_id))
    .outerjoin(AgendaItem, col(AgendaItem.id) == col(FloorRequest.agenda_item_id))
    .outerjoin(FloorOrigin, col(FloorOrigin.request_id) == col(FloorRequest.id))
    .where(col(ProcedureState.meeting_id) == bindparam("meeting_id"))
    .order_by(col(FloorRequest.id))
    .execution_options(populate_existing=True))
_MARKS = select(CascadeRef.ref, CascadeRef.local_id).where(
    col(CascadeRef.meeting_id) == bindparam("meeting_id"),
    or_(col(CascadeRef.ref) == HOLD, col(CascadeRef.ref).startswith(COPY)))


@dataclass
class MirrorFloor:
    """The meeting's floor at this node, as one apply reads and changes it."""

    seq: int  # the procedure's seq when read (0: no procedure state yet)
    rows: dict[int, FloorRequest]  # the meeting's requests by id
    names: Names  # their people, sites and items, as rooms.floor.floor_view names them
    marks: dict[int, FloorOrigin]  # the requests of other nodes' people: where they are
    copies: dict[int, int]  # the owner's request id -> this node's copy
    held: bool  # this node keeps its people's requests (a local discussion)

    @classmethod
    async def read(cls, s: AsyncSession, meeting_id: int) -> MirrorFloor:
        """Two reads. The first starts from the procedure state (one row), so it also gives
        the seq that tells whether another process changed the floor before this apply's
        procedure.lock; a meeting with requests has that row (procedure.lock made it)."""
        found = await s.exec(_REQUESTS, params={"meeting_id": meeting_id})  # type: ignore[call-overload]
        seq, rows, marks = 0, {}, {}
        names: Names = ({}, {}, {})
        for seq, row, person, site, item, origin in found.all():  # noqa: B007  (the last)
            if row is None or row.id is None:
                continue  # the meeting has no request yet
            rows[row.id] = row
            name_row(names, row, person, site, item)
            if origin is not None:
                marks[row.id] = origin
        refs = await s.exec(_MARKS, params={"meeting_id": meeting_id})  # type: ignore[call-overload]
        copies, held = {}, False
        for ref, local in refs.all():
            if ref == HOLD:
                held = local == 1
            elif ref[len(COPY):].isdigit():
                copies[int(ref[len(COPY):])] = local
        return cls(int(seq or 0), rows, names, marks, copies, held)

    async def row_for(self, s: AsyncSession, meeting_id: int, unit: str, item: FloorItem
                      ) -> FloorRequest | None:
        """This node's row for the owner's `item`: its own person's original request, or
        the copy for another node's person, made the first time (with its origin mark)."""
        if item.origin == unit:
            return self.rows.get(item.remote)
        known = self.copies.get(item.id)
        if known is not None and known in self.rows:
            return self.rows[known]
        person = await proxy_user(s, item.origin, item.user, item.name)
        row = FloorRequest(meeting_id=meeting_id, user_id=person.id,  # type: ignore[arg-type]
                           for_site=item.for_site, status=item.status,
                           requested_at=parse_time(item.requested_at) or utcnow())
        s.add(row)
        await s.flush()
        assert row.id is not None
        mark = FloorOrigin(request_id=row.id, origin=item.origin, remote_id=item.remote,
                           site=item.site, unit=item.unit)
        s.add(mark)
        ref = f"{COPY}{item.id}"
        if known is None:  # none (read above): added, not looked up again
            s.add(CascadeRef(meeting_id=meeting_id, ref=ref, local_id=row.id))
        else:  # the row it named is gone: this one replaces it
            await s.exec(update(CascadeRef)  # type: ignore[call-overload]
                         .where(col(CascadeRef.meeting_id) == meeting_id,
                                col(CascadeRef.ref) == ref)
                         .values(local_id=row.id))
        self.rows[row.id], self.marks[row.id], self.copies[item.id] = row, mark, row.id
        self.names[0][row.user_id] = person.full_name
        return row

    def emit(self, holder: int | None) -> Emit:
        """The view pushed to this node's tablets, from what was applied."""
        requests = sorted(self.rows.values(), key=lambda r: r.id or 0)
        return "floor:changed", view_of(requests, self.names, self.marks, holder)
