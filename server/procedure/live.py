"""Running procedural changes and pushing them live: the one path every change takes.

`run_change` checks access, takes the meeting's procedure lock, applies the change, builds
the views to push and commits; only then are the events emitted, each stamped with the
meeting's `seq` so clients can drop any that arrive late. `cast_ballot` is the same for
ballots, group-committed: those waiting when the lock frees up share one transaction (one
fsync, and a handful of queries for the whole batch: rooms.ballot_box.cast_many). Vote tallies
are pushed at most every `TALLY_INTERVAL_S` per vote, not per ballot.

Access is always checked before any lock or write: `run_change` in its own short session
before it takes the meeting's lock; ballots together, a whole batch in one short session
(`meetings.require_many`) before the batch takes the lock. A refused change takes no lock and
writes nothing, and a batch in which every ballot is refused rolls back, so the meeting's seq
does not move either.

A committed floor change is published on the app's bus as `FloorChanged`
(server/procedure/events.py), in the process that handled it.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

import socketio
from aiohttp import web
from sqlmodel.ext.asyncio.session import AsyncSession

from rooms import audit, ballot_box, meetings, procedure, votes
from rooms.ballot_seal import BallotKey
from rooms.errors import Conflict, DomainError
from rooms.meetings import MeetingAccess
from rooms.models import Meeting, MeetingRole, User, utcnow
from rooms.permissions import Action
from rooms.procedure_models import ProcedureState
from server.core import keys
from server.core.realtime import meeting_room
from server.procedure.events import (
    AgendaChanged,
    AttendanceChanged,
    FloorChanged,
    FloorQueueChanged,
    VoteUpdated,
)
from server.procedure.keys import LIVE
from server.procedure.views import Emit, vote_emit

log = logging.getLogger(__name__)
T = TypeVar("T")
# Live tallies: once a second is plenty for people; each push is a message to every member
# (500 tablets: 500 messages), which the server and tablets pay during the vote's rush.
TALLY_INTERVAL_S = 1.0
# A close's scrub (a WAL checkpoint, fsyncs) waits until the final result has gone out to
# everyone (500 clients: ~0.1 s), and no longer: right after a close the meeting is quiet
# (no ballots, so no reader in the way), while later it would meet the next vote's rush.
# Meanwhile the WAL holds only sealed ballots, which say nothing without the key.
SCRUB_DELAY_S = 0.5


@dataclass
class ProcedureLive:
    """Per-app live state of the procedure: locks, pending tallies, ballot batches."""

    app: web.Application
    _locks: dict[int, asyncio.Lock] = field(default_factory=dict)
    _tally_pending: set[int] = field(default_factory=set)
    _tally_tasks: dict[int, asyncio.Task[None]] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _batches: dict[int, list[_Ballot]] = field(default_factory=dict)
    _drainers: dict[int, asyncio.Task[None]] = field(default_factory=dict)
    _key: BallotKey | None = None
    _scrubs_wanted: int = 0
    _scrubber: asyncio.Task[None] | None = None
    # PyMuPDF is not thread-safe: minutes are typeset one at a time, off the event loop.
    renderer: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(
        max_workers=1, thread_name_prefix="minutes"))

    async def close(self, _: web.Application | None = None) -> None:
        """On shutdown, before the database closes: stop pushes and batches, and wait for
        them to unwind (a task cancelled mid-transaction must roll back on an open pool)."""
        tasks = [t for t in (*self._tasks, *self._drainers.values()) if not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.renderer.shutdown(wait=False, cancel_futures=True)

    async def start(self, _: web.Application | None = None) -> None:
        """At start-up (after migrations): read the ballot key now, so a bad key file stops
        the start instead of a vote; scrub what an upgrade may have left behind."""
        self.key  # noqa: B018  (loaded now, or the start fails with its reason)
        self.scrub_soon()

    @property
    def key(self) -> BallotKey:
        """The ballot key sealing secret ballots (rooms/ballot_seal.py)."""
        if self._key is None:
            self._key = BallotKey.load_or_create(self.app[keys.SETTINGS].ballot_key_path)
        return self._key

    def scrub_soon(self) -> None:
        """After a secret vote closed: clear the engine's earlier states (votes.scrub_after_
        close), retried until no reader blocks it."""
        self._scrubs_wanted += 1
        if self._scrubber is None or self._scrubber.done():
            self._scrubber = asyncio.create_task(self._scrub())
            self._tasks.add(self._scrubber)
            self._scrubber.add_done_callback(self._tasks.discard)

    async def _scrub(self) -> None:
        await asyncio.sleep(SCRUB_DELAY_S)
        delay, failures = 0.05, 0
        while self._scrubs_wanted:
            wanted = self._scrubs_wanted
            try:
                done = await votes.scrub_after_close(self.app[keys.DB])
            except Exception as exc:  # noqa: BLE001 - retried below; said once, not every few seconds
                if not failures:
                    first_line = (str(exc).splitlines() or [""])[0]
                    log.warning("scrubbing the database after a secret vote failed (will "
                                "retry): %s: %s", type(exc).__name__, first_line)
                failures, done = failures + 1, False
            if done:
                self._scrubs_wanted -= wanted
                delay, failures = 0.05, 0
                continue
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)  # the WAL's old frames are what is at stake: keep trying

    @property
    def sio(self) -> socketio.AsyncServer:
        return self.app[keys.SIO]

    def lock(self, meeting_id: int) -> asyncio.Lock:
        # In-process queue in front of the database lock, so waiting writers do not spin in
        # SQLite's busy handler; across processes the database row lock still serialises.
        return self._locks.setdefault(meeting_id, asyncio.Lock())

    async def emit(self, meeting_id: int, seq: int, emits: list[Emit]) -> None:
        now = utcnow().isoformat()
        for event, payload in emits:
            await self.sio.emit(event, {"meeting_id": meeting_id, "seq": seq, "server_time": now,
                                        **payload}, room=meeting_room(meeting_id))
            if event == "floor:changed":
                holder = payload.get("holder")
                await self.app[keys.BUS].publish(FloorChanged(
                    meeting_id, holder["user_id"] if holder else None,
                    holder.get("name") if holder else None,
                    holder.get("site") if holder else None))
                await self.app[keys.BUS].publish(FloorQueueChanged(meeting_id, seq))
            elif event == "vote:updated":  # opened, live tally, closed: the cascade follows
                vote = payload["vote"]
                await self.app[keys.BUS].publish(VoteUpdated(meeting_id, vote["id"],
                                                             vote["status"]))
            elif event == "attendance:changed":
                await self.app[keys.BUS].publish(AttendanceChanged(meeting_id))
            elif event == "agenda:changed":
                await self.app[keys.BUS].publish(AgendaChanged(meeting_id))

    def schedule_tally(self, meeting_id: int, vote_id: int) -> None:
        """Push the vote's live tally soon; many ballots in a burst make one push."""
        if vote_id in self._tally_pending:
            return
        self._tally_pending.add(vote_id)
        task = asyncio.create_task(self._push_tally(meeting_id, vote_id))
        self._tasks.add(task)
        self._tally_tasks[vote_id] = task
        task.add_done_callback(self._tasks.discard)

    def cancel_tally(self, vote_id: int) -> None:
        """The vote is closing: its final result replaces any live tally still to come."""
        task = self._tally_tasks.pop(vote_id, None)
        if task is not None and not task.done():
            task.cancel()
        self._tally_pending.discard(vote_id)

    async def _push_tally(self, meeting_id: int, vote_id: int) -> None:
        try:
            await asyncio.sleep(TALLY_INTERVAL_S)
            self._tally_pending.discard(vote_id)
            async with self.app[keys.DB].session() as s:
                state = await procedure.read_state(s, meeting_id)  # seq first: never newer
                vote = await votes.get_vote(s, meeting_id, vote_id)
                if vote.status != votes.VoteStatus.open:
                    return  # closing pushed the final result already
                emit = await vote_emit(s, vote_id)
            await self.emit(meeting_id, state.seq, [emit])
        except Exception:
            self._tally_pending.discard(vote_id)
            log.exception("pushing the tally of vote %s failed", vote_id)
        finally:
            if self._tally_tasks.get(vote_id) is asyncio.current_task():
                del self._tally_tasks[vote_id]


    # --- group commit: many ballots, one transaction ------------------------------------

    def enqueue(self, meeting_id: int, ballot: _Ballot) -> None:
        self._batches.setdefault(meeting_id, []).append(ballot)
        drainer = self._drainers.get(meeting_id)
        if drainer is None or drainer.done():
            self._drainers[meeting_id] = asyncio.create_task(self._drain(meeting_id))

    async def _drain(self, meeting_id: int) -> None:
        try:
            while self._batches.get(meeting_id):
                if len(self._batches[meeting_id]) < LINGER_BELOW:
                    await asyncio.sleep(BATCH_LINGER_S)  # let the batch fill up a little
                pending = self._batches.pop(meeting_id)
                batch, rest = pending[:MAX_BATCH], pending[MAX_BATCH:]
                if rest:
                    self._batches[meeting_id] = rest + self._batches.get(meeting_id, [])
                admitted = await self._admit(meeting_id, batch)
                if admitted:
                    await self._apply_batch(meeting_id, admitted)
        finally:  # nothing is kept for a meeting once its ballots are through
            if self._drainers.get(meeting_id) is asyncio.current_task():
                del self._drainers[meeting_id]

    async def _admit(self, meeting_id: int, batch: list[_Ballot]) -> list[_Ballot]:
        """The batch's access checks, in one short session, before any lock: those refused
        are answered now; the others go on with their role in the meeting."""
        try:
            async with self.app[keys.DB].session() as s:
                accesses = await meetings.require_many(s, [b.user for b in batch], meeting_id,
                                                       Action.vote)
        except Exception as exc:  # noqa: BLE001 - each ballot of the batch gets the error
            for ballot in batch:
                ballot.fail(exc)
            return []
        admitted = []
        for ballot, access in zip(batch, accesses):
            if isinstance(access, DomainError):
                ballot.fail(access)
                continue
            try:
                require_status(access.meeting, When.open)
            except DomainError as exc:
                ballot.fail(exc)
                continue
            ballot.role = access.role
            admitted.append(ballot)
        return admitted

    async def _apply_batch(self, meeting_id: int, batch: list[_Ballot]) -> None:
        """Apply the batch in one transaction (one fsync): first all at once (cast_many);
        if that fails other than by refusing ballots (say another process stored one of
        these voters' ballots meanwhile), the attempt rolls back and is redone ballot by
        ballot, one savepoint each."""
        for careful in (False, True):
            todo = [b for b in batch if not b.future.done()]  # callers that went away are skipped
            if not todo:
                return
            try:
                outcomes, seq = await self._run_batch(meeting_id, todo, careful)
            except _Retry:
                continue
            except _Refused as refused:  # rolled back: nothing to commit
                outcomes, seq = refused.outcomes, 0
            except BaseException as exc:
                for ballot in todo:
                    ballot.fail(exc if isinstance(exc, Exception) else RuntimeError("cancelled"))
                if not isinstance(exc, Exception):
                    raise
                return
            for ballot, outcome in outcomes:  # only now: the batch is committed
                if isinstance(outcome, Exception):
                    ballot.fail(outcome)
                elif not ballot.future.done():
                    ballot.future.set_result((outcome, seq))
            return

    async def _run_batch(self, meeting_id: int, batch: list[_Ballot], careful: bool
                         ) -> tuple[list[tuple[_Ballot, ballot_box.CastResult | Exception]], int]:
        """One attempt; returns each ballot's result or refusal, to hand out after commit."""
        outcomes: list[tuple[_Ballot, ballot_box.CastResult | Exception]] = []
        by_vote: dict[int, list[_Ballot]] = {}
        for ballot in batch:
            by_vote.setdefault(ballot.vote_id, []).append(ballot)
        async with self.lock(meeting_id), self.app[keys.DB].session() as s:
            state = await procedure.lock(s, meeting_id)
            async with audit.buffered(s):  # one chain extension for the whole batch
                for vote_id, group in by_vote.items():
                    try:
                        vote = await votes.get_vote(s, meeting_id, vote_id)
                    except DomainError as exc:
                        outcomes += [(b, exc) for b in group]
                        continue
                    if careful:
                        outcomes += await self._one_by_one(s, vote, group)
                        continue
                    try:
                        results = await ballot_box.cast_many(
                            s, vote, [b.ballot() for b in group], self.key)
                    except DomainError as exc:  # the whole vote refused (e.g. its key)
                        outcomes += [(b, exc) for b in group]
                        continue
                    except Exception as exc:
                        raise _Retry from exc  # it may have written: redo carefully
                    outcomes += list(zip(group, results))
                if all(isinstance(o, Exception) for _, o in outcomes):
                    raise _Refused(outcomes)  # roll back: the seq does not move
            return outcomes, state.seq

    async def _one_by_one(self, s: AsyncSession, vote: votes.Vote, group: list[_Ballot]
                          ) -> list[tuple[_Ballot, ballot_box.CastResult | Exception]]:
        outcomes: list[tuple[_Ballot, ballot_box.CastResult | Exception]] = []
        for ballot in group:
            mark = audit.buffer_mark(s)
            b = ballot.ballot()
            try:
                async with s.begin_nested():
                    outcomes.append((ballot, await ballot_box.cast(
                        s, vote, b.user, b.role, b.option, b.client_seq, b.receipt,
                        key=self.key)))
            except Exception as exc:  # noqa: BLE001 - that ballot alone is refused
                audit.buffer_rewind(s, mark)  # that ballot alone is refused
                outcomes.append((ballot, exc if isinstance(exc, DomainError) else
                                 Conflict("this conflicts with another change; nothing was "
                                          "applied")))
        return outcomes


class _Retry(Exception):
    """An optimistic batch hit an unexpected error: redo it with savepoints."""


class _Refused(Exception):
    """Every ballot of the batch was refused: roll back, hand out the refusals."""

    def __init__(self, outcomes: list[tuple[_Ballot, ballot_box.CastResult | Exception]]) -> None:
        super().__init__("every ballot was refused")
        self.outcomes = outcomes


@dataclass
class _Ballot:
    user: User
    vote_id: int
    option: int
    client_seq: int
    receipt: str | None
    future: asyncio.Future[tuple[ballot_box.CastResult, int]]
    role: MeetingRole | None = None  # set once access is checked

    def ballot(self) -> ballot_box.BallotIn:
        assert self.role is not None
        return ballot_box.BallotIn(self.user, self.role, self.option, self.client_seq, self.receipt)

    def fail(self, exc: Exception) -> None:
        if not self.future.done():  # its caller may have gone (a dropped connection)
            self.future.set_exception(exc)


MAX_BATCH = 500
# Group commit with a linger: a batch costs ~7 ms of CPU whatever its size (a dozen
# statements and a commit) and ~0.4 ms more per ballot, so at 250 ballots a second, batches
# of 4 (each taken as soon as the last one committed) cost the server half a core; waiting
# 20 ms for company first makes them several times larger, for 20 ms on each ballot's ack.
BATCH_LINGER_S = 0.02
LINGER_BELOW = 64  # ballots already waiting: no need to wait for more

Change = Callable[[AsyncSession, MeetingAccess, ProcedureState], Awaitable[tuple[T, list[Emit]]]]


class When(enum.Enum):
    """In which meeting status a change is allowed."""

    open = "open"  # live procedure: check-in, floor, votes
    not_closed = "not_closed"  # preparation too: the agenda
    any = "any"  # records: minutes, conclusions


def require_status(meeting: Meeting, when: When) -> None:
    if when == When.open:
        procedure.require_open(meeting)
    elif when == When.not_closed:
        procedure.require_not_closed(meeting)


async def _check(app: web.Application, user: User, meeting_id: int, action: Action,
                 when: When) -> MeetingAccess:
    """The access check, in its own short session: a change waiting for the meeting's lock
    holds no database connection."""
    async with app[keys.DB].session() as s:
        access = await meetings.require(s, user, meeting_id, action)
        require_status(access.meeting, when)
        return access


async def cast_ballot(app: web.Application, user: User, meeting_id: int, vote_id: int,
                      option: int, client_seq: int, receipt: str | None = None
                      ) -> tuple[ballot_box.CastResult, int]:
    """Cast a ballot: it waits for the meeting's next batch (group commit), whose access
    checks run before it takes any lock; this returns once that batch has committed, with
    (result, seq), or raises the ballot's refusal."""
    future: asyncio.Future[tuple[ballot_box.CastResult, int]] = \
        asyncio.get_running_loop().create_future()
    app[LIVE].enqueue(meeting_id, _Ballot(user, vote_id, option, client_seq, receipt, future))
    return await future


async def run_change(app: web.Application, user: User, meeting_id: int, action: Action,
                     change: Change[T], *, when: When = When.open) -> tuple[T, int]:
    """Apply one procedural change atomically and push its events; returns (result, seq)."""
    live = app[LIVE]
    access = await _check(app, user, meeting_id, action, when)
    async with live.lock(meeting_id), app[keys.DB].session() as s:
        state = await procedure.lock(s, meeting_id)
        if when == When.open:  # paused meanwhile? (read under the lock)
            procedure.require_open(access.meeting, state)
        result, emits = await change(s, access, state)
        seq = state.seq
    await live.emit(meeting_id, seq, emits)
    return result, seq

