"""Who presents which page in each meeting, so followers turn with them and late joiners can
ask. One presenter per meeting, across every server process.

The state is one `Presentation` row per meeting (documents.db_models), so a tablet connected
to any process reads the same presentation, and the one-presenter rule is a conditional
UPDATE (`... WHERE active IS false OR user_id = :me`), never a read-then-write.

Two kinds of change:

- **major** — start, page turn, another document or version, take-over, stop: written to the
  database before it is acknowledged and pushed. The write moves `seq` to the next multiple
  of `SEQ_STEP`, atomically in the UPDATE, so two processes can never hand out the same seq.
- **minor** — zoom/scroll on the same page by the same presenter (several a second while
  they pan): pushed at once from this process (socket.io's Redis manager fans it out to the
  other processes' clients) with `seq + 1`, and written to the row at most once per
  `PERSIST_INTERVAL_S`, so a late joiner gets a position at most about a second old. That
  write is conditional too (same presenter, same page, same major seq): it never overwrites a
  newer change made through another process.

`seq` therefore still grows with every change (protocol: followers ignore a lower seq): any
major change lands above every minor seq handed out before it. The laser pointer is never
stored. The pointer check reads this process's copy when it was confirmed by the database
within `POINTER_TRUST_S`, else the row; a minor move needs a copy confirmed within
`MOVE_TRUST_S` (else it is written as a major change, which also checks the presenter).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, and_, bindparam, case, or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from documents.db_models import Presentation
from rooms.db import Database
from rooms.errors import Conflict
from rooms.models import utcnow

log = logging.getLogger(__name__)

POINTERS_PER_SECOND = 30
SEQ_STEP = 1000  # minor moves between two major changes (more: the next one is written)
PERSIST_INTERVAL_S = 1.0  # minor moves reach the database at most this often per meeting
POINTER_TRUST_S = 1.0  # how long the pointer check trusts this process's copy
MOVE_TRUST_S = 5.0  # how long a minor move trusts it (every move is checked by its flush)

_T = Presentation.__table__  # type: ignore[attr-defined]


class NotPresenter(Conflict):
    code = "not_presenter"


class PresenterBusy(Conflict):
    code = "presenter_busy"


@dataclass
class Live:
    """This process's copy of one meeting's presentation."""

    state: dict[str, Any]
    confirmed: float  # time.monotonic() when the database last agreed with `state`
    persisted_seq: int  # the seq the row holds (as far as this process knows)
    flush: asyncio.Task[None] | None = None

    @property
    def major(self) -> int:
        return int(self.state["seq"]) - int(self.state["seq"]) % SEQ_STEP


@dataclass
class Presenting:
    """The answer of `presenting`: the presentation the pointer belongs to."""

    user_id: int
    document_id: int
    version: int


def _inactive(meeting_id: int, seq: int) -> dict[str, Any]:
    return {"meeting_id": meeting_id, "active": False, "seq": seq, "presenter": None,
            "document_id": None, "version": None, "page": None, "zoom": None,
            "scroll_x": None, "scroll_y": None, "at": None}


def _state(row: Any) -> dict[str, Any]:
    if not row.active:
        return _inactive(row.meeting_id, row.seq)
    at: datetime | None = row.at
    return {"meeting_id": row.meeting_id, "active": True, "seq": row.seq,
            "presenter": {"user_id": row.user_id, "name": row.name},
            "document_id": row.document_id, "version": row.version, "page": row.page,
            "zoom": row.zoom, "scroll_x": row.scroll_x, "scroll_y": row.scroll_y,
            "at": at.isoformat() if at is not None else None}


def _next_major() -> Any:
    return _T.c.seq - _T.c.seq % SEQ_STEP + SEQ_STEP


_FIELDS = ("active", "user_id", "name", "document_id", "version", "page", "zoom", "scroll_x",
           "scroll_y", "at")
# take_over's UPDATE, built once (at every follower node on every page turn): the next
# major seq, or the seq pushed ahead of the write if that is higher.
_AT_LEAST = bindparam("p_seq", type_=Integer)
_TAKE_OVER = (update(_T).where(_T.c.meeting_id == bindparam("p_meeting_id"))
              .values(**{f: bindparam(f"p_{f}") for f in _FIELDS},
                      seq=case((_next_major() > _AT_LEAST, _next_major()), else_=_AT_LEAST))
              .returning(*_T.c))
Also = Callable[[AsyncSession], Awaitable[None]]  # more writes in the same transaction


@dataclass
class PresenterBoard:
    db: Database
    persist_interval_s: float = PERSIST_INTERVAL_S
    _live: dict[int, Live] = field(default_factory=dict)
    _pointers: dict[tuple[int, int], deque[float]] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _ahead: dict[int, dict[str, Any]] = field(default_factory=dict)  # pushed, being written
    writes: int = 0  # database writes (major changes and position flushes), for tests

    # --- reading ---------------------------------------------------------------------------

    async def get(self, meeting_id: int) -> dict[str, Any]:
        """The meeting's state: the row, or this process's newer minor move of it, or the
        change pushed `ahead` of its write while that write is on its way (a tablet joining
        then is not given the page before, which no later push would correct)."""
        async with self.db.session() as s:
            row = (await s.exec(select(Presentation).where(
                col(Presentation.meeting_id) == meeting_id))).first()
        pushed = self._ahead.get(meeting_id)
        if pushed is not None and (row is None or pushed["seq"] > row.seq):
            return dict(pushed)
        if row is None:
            return _inactive(meeting_id, 0)
        state = _state(row)
        local = self._live.get(meeting_id)
        if local is not None and local.major == state["seq"] - state["seq"] % SEQ_STEP \
                and local.state["seq"] >= state["seq"]:
            local.confirmed = time.monotonic()
            return dict(local.state)
        self._remember(meeting_id, state)
        return state

    async def presenting(self, meeting_id: int, user_id: int, document_id: int) -> Presenting:
        """Raises NotPresenter unless `user_id` presents `document_id` now."""
        local = self._live.get(meeting_id)
        if local is not None and time.monotonic() - local.confirmed < POINTER_TRUST_S:
            state = local.state
        else:
            state = await self.get(meeting_id)
        presenter = state["presenter"]
        if not state["active"] or presenter["user_id"] != user_id \
                or state["document_id"] != document_id:
            raise NotPresenter("only the current presenter of this document may point")
        return Presenting(user_id, document_id, state["version"])

    def pointer_allowed(self, meeting_id: int, user_id: int) -> bool:
        now = time.monotonic()
        stamps = self._pointers.setdefault((meeting_id, user_id), deque())
        while stamps and stamps[0] <= now - 1.0:
            stamps.popleft()
        if len(stamps) >= POINTERS_PER_SECOND:
            return False
        stamps.append(now)
        return True

    # --- changing --------------------------------------------------------------------------

    async def update(self, meeting_id: int, *, user_id: int, name: str, document_id: int,
                     version: int, page: int, zoom: float, scroll_x: float, scroll_y: float,
                     take_over: bool = False) -> dict[str, Any]:
        """Start, move or take over. Raises PresenterBusy if someone else presents (and
        `take_over` is false)."""
        where = (document_id, version, page)
        local = self._live.get(meeting_id)
        if (local is not None and not take_over and local.state["active"]
                and local.state["presenter"]["user_id"] == user_id
                and (local.state["document_id"], local.state["version"],
                     local.state["page"]) == where
                and local.state["seq"] % SEQ_STEP < SEQ_STEP - 1
                and time.monotonic() - local.confirmed < MOVE_TRUST_S):
            local.state = {**local.state, "seq": local.state["seq"] + 1, "zoom": zoom,
                           "scroll_x": scroll_x, "scroll_y": scroll_y,
                           "at": utcnow().isoformat()}
            self._schedule_flush(meeting_id, local)
            return dict(local.state)
        values = {"active": True, "user_id": user_id, "name": name, "document_id": document_id,
                  "version": version, "page": page, "zoom": zoom, "scroll_x": scroll_x,
                  "scroll_y": scroll_y, "at": utcnow()}
        async with self.db.session() as s:
            stmt = update(_T).where(_T.c.meeting_id == meeting_id)
            if not take_over:
                stmt = stmt.where(or_(_T.c.active.is_(False), _T.c.user_id == user_id))
            returning = stmt.values(**values, seq=_next_major()).returning(*_T.c)
            row = (await s.exec(returning)).first()
            if row is None:
                # No row yet, or someone else presents: insert, or learn who it is.
                insert = self._insert(meeting_id, values, SEQ_STEP)
                row = (await s.exec(insert)).first()
                if row is None:
                    row = (await s.exec(returning)).first()
                if row is None:
                    current = (await s.exec(
                        select(Presentation.name).where(
                            col(Presentation.meeting_id) == meeting_id))).first()
                    raise PresenterBusy(f"{current or 'someone else'} is presenting; they "
                                        f"stop first, or take over")
        self.writes += 1
        state = _state(row)
        self._remember(meeting_id, state)
        return state

    def ahead(self, meeting_id: int, *, user_id: int, name: str, document_id: int,
              version: int, page: int, zoom: float, scroll_x: float, scroll_y: float,
              at: datetime) -> dict[str, Any]:
        """The state `take_over` with these values will write, from this process's copy of
        the meeting's presentation (its next major seq), for a follower node to push before
        the write (docs/cascade.md, "Presenter"). Without a copy (the first change this
        process applies to the meeting), at the first major seq: what the write makes when
        the meeting has no presentation row yet, the usual case (every node of a tree meets
        the owner's first page turn this way, all at once). Where a row exists, or another
        process changes it meanwhile, the write's seq is higher and pushed again then."""
        local = self._live.get(meeting_id)
        major = SEQ_STEP if local is None else local.major + SEQ_STEP
        pushed = self._ahead[meeting_id] = {
            "meeting_id": meeting_id, "active": True, "seq": major,
            "presenter": {"user_id": user_id, "name": name}, "document_id": document_id,
            "version": version, "page": page, "zoom": zoom, "scroll_x": scroll_x,
            "scroll_y": scroll_y, "at": at.isoformat()}
        return dict(pushed)

    async def take_over(self, meeting_id: int, *, user_id: int, name: str, document_id: int,
                        version: int, page: int, zoom: float, scroll_x: float,
                        scroll_y: float, at: datetime, seq: int = 0,
                        also: Also | None = None) -> dict[str, Any]:
        """A major change written whoever presents (a follower node's copy of the owner's
        presenter), at the next major seq or `seq` if higher (the seq `ahead` pushed: never
        lower than what the tablets were shown); `also` writes in the same transaction (the
        journal entry it applies). One statement once the row exists."""
        params = {"p_meeting_id": meeting_id, "p_seq": seq, "p_active": True,
                  "p_user_id": user_id, "p_name": name, "p_document_id": document_id,
                  "p_version": version, "p_page": page, "p_zoom": zoom,
                  "p_scroll_x": scroll_x, "p_scroll_y": scroll_y, "p_at": at}
        try:
            async with self.db.session() as s:
                row = (await s.exec(_TAKE_OVER, params=params)).first()  # type: ignore[call-overload]
                if row is None:  # no row yet (or another process inserts it now)
                    values = {f: params[f"p_{f}"] for f in _FIELDS}
                    row = (await s.exec(self._insert(meeting_id, values,
                                                     max(seq, SEQ_STEP)))).first()
                    if row is None:
                        row = (await s.exec(_TAKE_OVER, params=params)).first()  # type: ignore[call-overload]
                if also is not None:
                    await also(s)
        finally:  # written (the row says it now), or not: the row is what is true
            self._ahead.pop(meeting_id, None)
        self.writes += 1
        state = _state(row)
        self._remember(meeting_id, state)
        return state

    async def stop(self, meeting_id: int) -> dict[str, Any]:
        cleared = {"active": False, "user_id": None, "name": None, "document_id": None,
                   "version": None, "page": None, "zoom": None, "scroll_x": None,
                   "scroll_y": None, "at": utcnow()}
        async with self.db.session() as s:
            row = (await s.exec(update(_T).where(_T.c.meeting_id == meeting_id)
                                   .values(**cleared, seq=_next_major())
                                   .returning(*_T.c))).first()
        if row is None:
            return _inactive(meeting_id, 0)
        self.writes += 1
        state = _state(row)
        self._remember(meeting_id, state)
        return state

    async def close(self) -> None:
        """Write the last positions not stored yet (the app is stopping)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for meeting_id, local in list(self._live.items()):
            if local.state["seq"] > local.persisted_seq:
                await self._persist(meeting_id, local)

    # --- internals -------------------------------------------------------------------------

    def _insert(self, meeting_id: int, values: dict[str, Any], seq: int) -> Any:
        dialect = sqlite if self.db.is_sqlite else postgresql
        return (dialect.insert(_T).values(meeting_id=meeting_id, seq=seq, **values)
                .on_conflict_do_nothing(index_elements=["meeting_id"]).returning(*_T.c))

    def _remember(self, meeting_id: int, state: dict[str, Any]) -> None:
        """Keep `state` (confirmed by the database) unless this process knows a newer one."""
        local = self._live.get(meeting_id)
        now = time.monotonic()
        if local is not None and local.state["seq"] > state["seq"]:
            return
        if local is None:
            self._live[meeting_id] = Live(dict(state), now, state["seq"])
            return
        local.state, local.confirmed, local.persisted_seq = dict(state), now, state["seq"]

    def _schedule_flush(self, meeting_id: int, local: Live) -> None:
        if local.flush is not None and not local.flush.done():
            return
        task = asyncio.ensure_future(self._flush_later(meeting_id, local))
        local.flush = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush_later(self, meeting_id: int, local: Live) -> None:
        await asyncio.sleep(self.persist_interval_s)
        try:
            await self._persist(meeting_id, local)
        except Exception:
            log.exception("could not store the presenter position of meeting %d", meeting_id)
            self._live.pop(meeting_id, None)

    async def _persist(self, meeting_id: int, local: Live) -> None:
        """Store the latest minor move, unless the row changed since (another process)."""
        state = dict(local.state)
        seq = int(state["seq"])
        if seq <= local.persisted_seq or not state["active"]:
            return
        major = seq - seq % SEQ_STEP
        async with self.db.session() as s:
            row = (await s.exec(
                update(_T).where(and_(
                    _T.c.meeting_id == meeting_id, _T.c.active.is_(True),
                    _T.c.user_id == state["presenter"]["user_id"],
                    _T.c.document_id == state["document_id"], _T.c.version == state["version"],
                    _T.c.page == state["page"], _T.c.seq >= major, _T.c.seq < seq))
                .values(seq=seq, zoom=state["zoom"], scroll_x=state["scroll_x"],
                        scroll_y=state["scroll_y"], at=datetime.fromisoformat(state["at"]))
                .returning(_T.c.seq))).first()
        self.writes += 1
        if self._live.get(meeting_id) is not local:
            return
        if row is None:
            # Another process changed the presentation: forget ours, read it next time.
            if local.state["seq"] - local.state["seq"] % SEQ_STEP == major:
                self._live.pop(meeting_id, None)
            return
        local.persisted_seq = max(local.persisted_seq, seq)
        local.confirmed = time.monotonic()
        if local.state["seq"] > local.persisted_seq:  # moved again while we wrote
            local.flush = None
            self._schedule_flush(meeting_id, local)
