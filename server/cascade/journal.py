"""A meeting's journal across the tree (docs/cascade.md, "Meeting state across nodes").

The owner node appends entries (seq 1, 2, ... per meeting, committed before anyone hears
of them) and pushes them to its linked children; every node passes what it received on to
its own children at once, then applies it in order through the topic's applier while it
stores it with the owner's seq (one commit per push): behind the forwarding (a slow applier
at the city never delays the wards) and beside its own commit (a page turn reaches the
city's tablets without waiting for the city's fsync). A node that missed entries (a gap in a
push, a link back after an outage, a restart) pulls them from its parent by seq, so each
entry crosses each link once and a ward catches up by itself. An entry applied but not
stored (a failed commit, a crash in between) is pulled and applied again (appliers are
idempotent); one stored but not applied yet is applied at start-up. A topic that `keeps`
(the floor, votes: a change of the owner's is applied at every node of the tree) has its
entries stored by its applier, marked applied, in the one commit that applies them, not in
three (stored, applied, marked); until then the node counts them as received, and after a
crash before that commit it pulls again from the first one missing.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import replace
from typing import Any

from sqlalchemy import event, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rooms.cascade_models import CascadeEntry
from rooms.db import Database
from rooms.models import utcnow
from server.cascade.schemas import NodeError
from server.cascade.topics import Entry, Topics, decode, encode

log = logging.getLogger(__name__)

MAX_PULL = 200  # entries per pull answer (the child asks again while `more`)
PUSH_BYTES = 512_000  # entries' data per push passed on down the tree
Push = Callable[[str, list[dict[str, Any]]], Awaitable[None]]  # (key, entries) to children
MeetingOf = Callable[[str], Awaitable[int | None]]  # key -> local meeting id


def _chunks(entries: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Entries in pushes of at most PUSH_BYTES of data each (a message stays well under a
    websocket client's frame limit whatever a pull brought in one answer)."""
    out: list[list[dict[str, Any]]] = [[]]
    size = 0
    for raw in entries:
        n = len(encode(raw["data"]))
        if out[-1] and size + n > PUSH_BYTES:
            out.append([])
            size = 0
        out[-1].append(raw)
        size += n
    return out


def wire(entry: Entry) -> dict[str, Any]:
    return {"seq": entry.seq, "topic": entry.topic, "data": entry.data}


def _rows(key: str, entries: list[dict[str, Any]], applied: bool) -> list[dict[str, Any]]:
    now = utcnow()
    return [{"key": key, "seq": raw["seq"], "topic": raw["topic"], "data": encode(raw["data"]),
             "applied": applied, "at": now} for raw in entries]


_STORE: dict[tuple[str, bool], Any] = {}  # (dialect, applied) -> the statement, built once


async def _store(s: AsyncSession, key: str, entries: list[dict[str, Any]],
                 applied: bool) -> None:
    """The entries in one statement. One already here is left as it is (a push and a pull
    that crossed; an entry pulled again after a hole) unless `applied` marks it so. The
    statement is built once and takes the rows as parameters: at every mirror on every
    change of the owner's floor, building a multi-row INSERT with its values and its cache
    key cost more CPU than running it."""
    dialect = s.get_bind().dialect.name
    statement = _STORE.get((dialect, applied))
    if statement is None:
        insert = (pg_insert if dialect == "postgresql" else sqlite_insert)(
            CascadeEntry.__table__)  # type: ignore[attr-defined]  # the table: a Core insert
        statement = _STORE[(dialect, applied)] = insert.on_conflict_do_update(
            index_elements=["key", "seq"], set_={"applied": True}) if applied \
            else insert.on_conflict_do_nothing()
    await s.exec(statement, params=_rows(key, entries, applied))  # type: ignore[call-overload]


def _run_top(seqs: list[int]) -> int:
    """The top of the run 1, 2, 3, ... at the start of `seqs` (sorted)."""
    top = 0
    for seq in seqs:
        if seq != top + 1:
            break
        top = seq
    return top


class Journal:
    def __init__(self, db: Database, topics: Topics, push: Push, meeting_of: MeetingOf) -> None:
        self.db = db
        self.topics = topics
        self.push = push  # to this node's children
        self.meeting_of = meeting_of
        self._last: dict[str, int] = {}  # key -> highest seq stored here
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._todo: defaultdict[str, deque[Entry]] = defaultdict(deque)  # stored, to apply
        self._workers: dict[str, asyncio.Task[None]] = {}  # key -> its applier task
        self._marking: set[asyncio.Task[None]] = set()  # what was applied: marked, stored
        self._applied: dict[str, int] = {}  # key -> highest seq applied since start-up

    async def last(self, key: str) -> int:
        """The highest seq this node has with every one before it: stored here, or (a topic
        that `keeps`) on its way to its applier's commit. From the table: the top of its run
        from 1, as an entry its applier stores may be missing after a crash while a later
        one (stored at once) is there: pulled again from there."""
        if key not in self._last:
            async with self.db.session() as s:
                top, count = (await s.exec(select(func.max(CascadeEntry.seq), func.count())
                                           .where(CascadeEntry.key == key))).one()
                if top and count != top:  # a hole (rare: after a crash)
                    top = _run_top(list((await s.exec(
                        select(CascadeEntry.seq).where(CascadeEntry.key == key)
                        .order_by(col(CascadeEntry.seq)))).all()))
            self._last[key] = int(top or 0)
        return self._last[key]

    # -- at the owner ---------------------------------------------------------------------
    async def append(self, key: str, topic: str, data: dict[str, Any]) -> Entry:
        """Committed, then pushed to the children; in seq order within this process (the
        primary key orders writers of other processes: a taken seq is retried)."""
        data = self.topics.checked(topic, "down", data)
        async with self._locks[key]:
            for _ in range(20):
                seq = await self.last(key) + 1
                try:
                    async with self.db.session() as s:
                        s.add(CascadeEntry(key=key, seq=seq, topic=topic, data=encode(data),
                                           applied=True))
                        await s.commit()
                except IntegrityError:  # another process appended: read its last again
                    self._last.pop(key, None)
                    continue
                self._last[key] = seq
                entry = Entry(key, seq, topic, data)
                await self.push(key, [wire(entry)])
                return entry
        raise RuntimeError(f"journal {key}: no free seq after 20 tries")

    async def ephemeral(self, key: str, topic: str, data: dict[str, Any]) -> None:
        """Pushed live, never stored: a laser pointer's position (latest wins)."""
        data = self.topics.checked(topic, "down", data)
        await self.push(key, [{"seq": 0, "topic": topic, "data": data}])

    async def since(self, key: str, after: int) -> tuple[list[dict[str, Any]], bool]:
        """What a child missed: entries after `after`, at most MAX_PULL, and whether more."""
        async with self.db.session() as s:
            rows = (await s.exec(select(CascadeEntry)
                                 .where(CascadeEntry.key == key, col(CascadeEntry.seq) > after)
                                 .order_by(col(CascadeEntry.seq)).limit(MAX_PULL + 1))).all()
        entries: list[dict[str, Any]] = []
        seq = after
        for r in rows[:MAX_PULL]:
            if r.seq != seq + 1:  # a hole (an entry its applier has not stored yet): the
                return entries, False  # child asks again, and gets it once it is here
            entries.append({"seq": r.seq, "topic": r.topic, "data": decode(r.data)})
            seq = r.seq
        return entries, len(rows) > MAX_PULL

    # -- at every other node --------------------------------------------------------------
    async def ingest(self, key: str, entries: list[dict[str, Any]]) -> bool:
        """Pass on, store and queue for applying the parent's entries, in order. False if a
        gap was found (an entry after one this node has not got): the caller pulls from the
        parent. Returns once the new entries are stored here (those of a topic that `keeps`:
        queued for their applier, whose one commit stores, applies and marks each); applying
        runs behind, in seq order (`_apply_in_order`), so a slow applier never holds up the
        next entry on its way down the tree, and beside the commit. A push of live entries
        only (nothing to store, no seq to check) waits for no other push's commit either."""
        meeting_id = await self.meeting_of(key)
        if meeting_id is None:
            raise NodeError("not_found", f"meeting {key} is not mirrored here")
        if entries and all(raw["seq"] == 0 for raw in entries):
            for chunk in _chunks(entries):
                await self.push(key, chunk)
            self._queue(meeting_id, key, entries)
            return True
        async with self._locks[key]:
            last, fresh, gap = await self.last(key), [], False
            for raw in entries:
                seq = raw["seq"]
                if seq == 0:  # ephemeral: passed on and applied in its place, never stored
                    fresh.append(raw)
                elif seq <= last:
                    continue  # already here (a push and a pull crossed)
                elif seq != last + 1:
                    gap = True
                    break
                else:
                    fresh.append(raw)
                    last = seq
            if not fresh:
                return not gap
            # Children first, before this node's own commit: each entry was committed at the
            # owner before anyone heard of it, and a child that has an entry this node then
            # failed to store loses nothing (this node pulls it again; the child skips it).
            for chunk in _chunks(fresh):
                await self.push(key, chunk)
            # Then applied here, in order, while this node stores them: what was applied is
            # marked only once this lock is free again, i.e. after the commit.
            self._queue(meeting_id, key, fresh)
            durable = [raw for raw in fresh
                       if raw["seq"] and not self.topics.keeps(raw["topic"])]
            if durable:  # one commit for the whole push
                async with self.db.session() as s:
                    await _store(s, key, durable, applied=False)
                    await s.commit()
            self._last[key] = last
        return not gap

    def _queue(self, meeting_id: int, key: str, entries: list[dict[str, Any]]) -> None:
        self._todo[key].extend(Entry(key, raw["seq"], raw["topic"], raw["data"])
                               for raw in entries)
        worker = self._workers.get(key)
        if worker is None or worker.done():
            self._workers[key] = asyncio.create_task(
                self._apply_in_order(meeting_id, key), name=f"cascade-apply-{key}")

    async def _apply_in_order(self, meeting_id: int, key: str) -> None:
        """The meeting's received entries through their appliers, one at a time in seq
        order; what was applied is marked in one commit per run, once the push that brought
        it is stored (a crash before that re-applies them at start-up, or pulls them again:
        appliers are idempotent). An entry of a topic of whole states with a newer one that
        covers it queued behind (a node behind: its CPU, a catch-up) is not applied: stored,
        marked applied, with the newer one once that one is applied (`Topic.covers`)."""
        todo = self._todo[key]
        while todo:
            done: list[int] = []
            covered: dict[str, list[Entry]] = {}  # topic -> entries the next one covers
            while todo:
                entry = todo.popleft()
                newer = next((later for later in todo if later.topic == entry.topic), None) \
                    if self.topics.whole(entry.topic) else None
                if newer is not None and self.topics.covers(entry, newer):
                    if entry.seq:  # (a live push: nothing to store)
                        covered.setdefault(entry.topic, []).append(entry)
                    continue
                carried = covered.pop(entry.topic, [])
                if entry.seq and self.topics.keeps(entry.topic):
                    await self._apply_keeping(meeting_id, entry, carried)
                else:
                    await self._apply(meeting_id, entry)
                    if entry.seq:
                        done.append(entry.seq)
                    if carried:  # after the newer one is applied, beside what follows
                        self._beside(self._store_applied(carried))
                top = max([entry.seq, *(e.seq for e in carried)])
                if top:
                    self._applied[key] = max(top, self._applied.get(key, 0))
            if done:  # beside the next entries' applying, never in front of it
                self._beside(self._mark_when_stored(key, done))

    def _beside(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._marking.add(task)
        task.add_done_callback(self._marking.discard)

    async def _mark_when_stored(self, key: str, seqs: list[int]) -> None:
        async with self._locks[key]:  # the ingest that queued them has committed
            pass
        try:
            await self._mark_applied(key, seqs)
        except Exception:  # the rows stay unapplied: applied again at start-up
            log.exception("cascade: marking journal %s applied failed", key)

    def applied(self, key: str) -> int:
        """The highest seq applied here since start-up (0: none)."""
        return self._applied.get(key, 0)

    async def applying(self, timeout: float) -> bool:
        """Waits (at most `timeout` s) until the entries received so far are applied here;
        False if there were none to wait for. A child hears of an entry before this node
        applied it (children first), and may ask for what it names at once."""
        running = [task for task in self._workers.values() if not task.done()]
        if running:
            await asyncio.wait(running, timeout=timeout)
        return bool(running)

    async def close(self) -> None:
        """Stop applying (at shutdown): what is left is applied at the next start-up."""
        workers = [*self._workers.values(), *self._marking]
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)

    async def _apply(self, meeting_id: int, entry: Entry) -> None:
        """A bad entry or a failing applier is logged and skipped: the journal goes on."""
        try:
            self.topics.checked(entry.topic, "down", entry.data)
            topic = self.topics.get(entry.topic, "down")
            if topic.apply is not None:
                await topic.apply(meeting_id, entry)
        except NodeError as exc:
            log.warning("cascade: journal %s #%d (%s) not applied: %s: %s", entry.key,
                        entry.seq, entry.topic[:64], exc.code, exc.message)
        except Exception:
            log.exception("cascade: applying journal %s #%d (%s) failed", entry.key,
                          entry.seq, entry.topic)

    async def _apply_keeping(self, meeting_id: int, entry: Entry,
                             covered: list[Entry] | None = None) -> None:
        """An entry whose applier stores it (`Entry.keep`): stored, applied and marked in
        the applier's one commit, with the older entries it `covered`; else (it wrote
        nothing, refused the entry, or its commit failed) stored here, marked applied, in a
        task beside the next entries' applying (a failing applier is skipped, as any other).
        If that fails too, the entries are pulled again from the parent."""
        kept = False
        entries = [*(covered or []), entry]

        def committed(_: object) -> None:
            nonlocal kept
            kept = True

        async def keep(s: AsyncSession) -> None:
            await _store(s, entry.key, [wire(e) for e in entries], applied=True)
            event.listen(s.sync_session, "after_commit", committed, once=True)
        await self._apply(meeting_id, replace(entry, keep=keep))
        if not kept:  # beside the next entries' applying, never in front of it (a page
            # turn's journaled copy, shown already, would hold the next live turn)
            self._beside(self._store_applied(entries))

    async def _store_applied(self, entries: list[Entry]) -> None:
        key = entries[0].key
        try:
            async with self.db.session() as s:
                await _store(s, key, [wire(e) for e in entries], applied=True)
                await s.commit()
        except Exception:
            log.exception("cascade: storing journal %s #%s failed (pulled again)", key,
                          ",".join(str(e.seq) for e in entries))
            async with self._locks[key]:  # not while a push is being stored
                if key in self._last:  # (else read from the table: the run's top)
                    self._last[key] = min(self._last[key], min(e.seq for e in entries) - 1)

    async def _mark_applied(self, key: str, seqs: list[int]) -> None:
        async with self.db.session() as s:
            await s.exec(update(CascadeEntry)  # type: ignore[call-overload]
                         .where(col(CascadeEntry.key) == key, col(CascadeEntry.seq).in_(seqs))
                         .values(applied=True))
            await s.commit()

    async def apply_pending(self) -> int:
        """At start-up: entries stored but not applied (a crash in between), in order up to
        a hole (one whose applier had not stored it yet); those after it are pulled again
        and applied after it."""
        async with self.db.session() as s:
            rows = (await s.exec(select(CascadeEntry).where(col(CascadeEntry.applied).is_(False))
                                 .order_by(col(CascadeEntry.key), col(CascadeEntry.seq)))).all()
        done = 0
        for row in rows:
            if row.seq > await self.last(row.key):
                continue
            entry = Entry(row.key, row.seq, row.topic, decode(row.data))
            meeting_id = await self.meeting_of(row.key)
            if meeting_id is not None and self.topics.keeps(row.topic):
                await self._apply_keeping(meeting_id, entry)
            else:
                if meeting_id is not None:
                    await self._apply(meeting_id, entry)
                await self._mark_applied(row.key, [row.seq])
            done += 1
        return done
