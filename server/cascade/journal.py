"""A meeting's journal across the tree (docs/cascade.md, "Meeting state across nodes").

The owner node appends entries (seq 1, 2, ... per meeting, committed before anyone hears
of them) and pushes them to its linked children; every node stores what it received with
the owner's seq, pushes it on to its own children, and applies it in order through the
topic's applier. A node that missed entries (a gap in a push, a link back after an outage,
a restart) pulls them from its parent by seq, so each entry crosses each link once and a
ward catches up by itself. Entries whose applier has not run yet (a crash between storing
and applying) are applied at start-up.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, func, select

from rooms.cascade_models import CascadeEntry
from rooms.db import Database
from server.cascade.schemas import NodeError
from server.cascade.topics import Entry, Topics, decode, encode

log = logging.getLogger(__name__)

MAX_PULL = 200  # entries per pull answer (the child asks again while `more`)
Push = Callable[[str, list[dict[str, Any]]], Awaitable[None]]  # (key, entries) to children
MeetingOf = Callable[[str], Awaitable[int | None]]  # key -> local meeting id


def wire(entry: Entry) -> dict[str, Any]:
    return {"seq": entry.seq, "topic": entry.topic, "data": entry.data}


class Journal:
    def __init__(self, db: Database, topics: Topics, push: Push, meeting_of: MeetingOf) -> None:
        self.db = db
        self.topics = topics
        self.push = push  # to this node's children
        self.meeting_of = meeting_of
        self._last: dict[str, int] = {}  # key -> highest seq stored here
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def last(self, key: str) -> int:
        if key not in self._last:
            async with self.db.session() as s:
                found = (await s.exec(select(func.max(CascadeEntry.seq))
                                      .where(CascadeEntry.key == key))).one()
            self._last[key] = int(found or 0)
        return self._last[key]

    # -- at the owner ---------------------------------------------------------------------
    async def append(self, key: str, topic: str, data: dict[str, Any]) -> Entry:
        """Committed, then pushed to the children; in seq order within this process (the
        primary key orders writers of other processes: a taken seq is retried)."""
        data = self.topics.checked(topic, "down", data)
        async with self._locks[key]:
            for _ in range(20):
                self._last.pop(key, None)  # another process may have appended
                seq = await self.last(key) + 1
                try:
                    async with self.db.session() as s:
                        s.add(CascadeEntry(key=key, seq=seq, topic=topic, data=encode(data),
                                           applied=True))
                        await s.commit()
                except IntegrityError:
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
        entries = [{"seq": r.seq, "topic": r.topic, "data": decode(r.data)}
                   for r in rows[:MAX_PULL]]
        return entries, len(rows) > MAX_PULL

    # -- at every other node --------------------------------------------------------------
    async def ingest(self, key: str, entries: list[dict[str, Any]]) -> bool:
        """Store, pass on and apply the parent's entries in order. False if a gap was found
        (an entry after one this node has not got): the caller pulls from the parent."""
        meeting_id = await self.meeting_of(key)
        if meeting_id is None:
            raise NodeError("not_found", f"meeting {key} is not mirrored here")
        async with self._locks[key]:
            for raw in entries:
                seq = raw["seq"]
                if seq == 0:  # ephemeral
                    await self.push(key, [raw])
                    await self._apply(meeting_id, Entry(key, 0, raw["topic"], raw["data"]))
                    continue
                last = await self.last(key)
                if seq <= last:
                    continue  # already here (a push and a pull crossed)
                if seq != last + 1:
                    return False
                async with self.db.session() as s:
                    s.add(CascadeEntry(key=key, seq=seq, topic=raw["topic"],
                                       data=encode(raw["data"])))
                    await s.commit()
                self._last[key] = seq
                await self.push(key, [raw])  # grandchildren first: they do not wait on us
                await self._apply(meeting_id, Entry(key, seq, raw["topic"], raw["data"]))
                await self._mark_applied(key, seq)
        return True

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

    async def _mark_applied(self, key: str, seq: int) -> None:
        async with self.db.session() as s:
            row = await s.get(CascadeEntry, (key, seq))
            if row is not None:
                row.applied = True
                await s.commit()

    async def apply_pending(self) -> int:
        """At start-up: entries stored but not applied (a crash in between)."""
        async with self.db.session() as s:
            rows = (await s.exec(select(CascadeEntry).where(col(CascadeEntry.applied).is_(False))
                                 .order_by(col(CascadeEntry.key), col(CascadeEntry.seq)))).all()
        for row in rows:
            meeting_id = await self.meeting_of(row.key)
            if meeting_id is not None:
                await self._apply(meeting_id, Entry(row.key, row.seq, row.topic,
                                                    decode(row.data)))
            await self._mark_applied(row.key, row.seq)
        return len(rows)
