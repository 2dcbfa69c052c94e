"""The audit log: append-only, one hash chain per meeting.

Each entry stores prev_hash and hash = sha256(prev_hash + canonical JSON of the entry's
content), so editing, deleting or reordering an entry breaks every later hash. The chain's
end (seq, hash) is also kept in `AuditHead`, so dropping entries from the tail shows too.

Why one chain per meeting: a meeting is the unit that is archived, verified and (later)
carried between nodes of a cascade; meetings never wait on each other's appends; and the
minutes archive records the head hash of its meeting's chain at generation time. What a
per-meeting chain cannot show by itself is the deletion of a whole meeting with its head
row; the archived minutes' recorded head hash is the outside anchor for that.

Appends serialise on the head row: `UPDATE audithead SET seq = seq + 1 … RETURNING` takes
the row lock on PostgreSQL and the database write lock on SQLite before the previous hash
is read, so two writers can never both extend the same hash (the chain never forks). Then
the entries are inserted and the head's hash set: three statements. A process that wrote
the head last knows it (`_heads`): its next append extends that head in one UPDATE that
matches only if the head is still exactly that seq and hash, then inserts: two statements.
If another process, or a transaction that rolled back, moved the head, that UPDATE matches
nothing and the append claims the head as above; the hint never decides what is chained.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import Engine, bindparam, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rooms.models import utcnow
from rooms.procedure import insert_ignore
from rooms.procedure_models import AuditEntry, AuditHead

GENESIS = "0" * 64


class AuditKind:
    """The procedural event kinds recorded here (others may add their own strings)."""

    agenda_changed = "agenda_changed"
    current_item = "current_item"
    checked_in = "checked_in"
    attendance_recorded = "attendance_recorded"
    roll_call = "roll_call"
    site_answered = "site_answered"
    floor_requested = "floor_requested"
    floor_granted = "floor_granted"
    floor_ended = "floor_ended"
    floor_skipped = "floor_skipped"
    floor_withdrawn = "floor_withdrawn"
    settings_changed = "settings_changed"
    vote_opened = "vote_opened"
    vote_closed = "vote_closed"
    ballot_cast = "ballot_cast"
    ballot_changed = "ballot_changed"
    site_counts = "site_counts"
    conclusions = "conclusions"
    minutes_generated = "minutes_generated"
    document_published = "document_published"


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def _stamp(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def entry_hash(prev_hash: str, meeting_id: int, seq: int, at: datetime,
               actor_id: int | None, kind: str, data: Any) -> str:
    content = {"meeting_id": meeting_id, "seq": seq, "at": _stamp(at), "actor_id": actor_id,
               "kind": kind, "data": data}
    return hashlib.sha256(prev_hash.encode("ascii") + canonical(content)).hexdigest()


_BUFFER = "hopso.audit_buffer"


@dataclass(frozen=True)
class _Buffered:
    meeting_id: int
    actor_id: int | None
    kind: str
    data: dict[str, Any]
    at: datetime


async def record(session: AsyncSession, meeting_id: int, actor_id: int | None, kind: str,
                 data: dict[str, Any]) -> AuditEntry | None:
    """Append an entry in the caller's transaction (it commits or rolls back with it).

    `data` must be JSON-serialisable; never put a secret ballot's option in it. Inside
    `buffered(session)` the entry is kept until the block ends and None is returned."""
    if not kind or len(kind) > 64:
        raise ValueError("audit kind must be 1 to 64 characters")
    canonical(data)  # fail now, not at the end of a batch
    pending: list[_Buffered] | None = session.info.get(_BUFFER)
    if pending is not None:
        pending.append(_Buffered(meeting_id, actor_id, kind, data, utcnow()))
        return None
    return (await _append(session, [_Buffered(meeting_id, actor_id, kind, data, utcnow())]))[0]


# The chain's end per meeting as this process last wrote it, per database (engine): a hint
# for the next append (module docstring). A rolled-back write leaves a hint the head does
# not match; the next append then claims the head, as without one.
_heads: WeakKeyDictionary[Engine, dict[int, tuple[int, str]]] = WeakKeyDictionary()


# The head's statements, built once (every audited change runs one or two of them).
_HEAD = col(AuditHead.meeting_id) == bindparam("b_meeting_id")
_CLAIM = (update(AuditHead).where(_HEAD).values(seq=AuditHead.seq + bindparam("n"))
          .returning(col(AuditHead.seq), col(AuditHead.hash)))
_EXTEND = (update(AuditHead).where(_HEAD, col(AuditHead.seq) == bindparam("b_seq"),
                                   col(AuditHead.hash) == bindparam("b_hash"))
           .values(seq=bindparam("new_seq"), hash=bindparam("new_hash")))
_SET_HASH = update(AuditHead).where(_HEAD).values(hash=bindparam("new_hash"))


def _known_heads(session: AsyncSession) -> dict[int, tuple[int, str]] | None:
    bind = session.bind
    engine = getattr(bind, "sync_engine", None)
    if not isinstance(engine, Engine):
        return None
    return _heads.setdefault(engine, {})


def _chain(items: list[_Buffered], last_seq: int, prev_hash: str) -> list[AuditEntry]:
    """`items` chained after the entry (`last_seq`, `prev_hash`)."""
    entries = []
    for seq, item in enumerate(items, last_seq + 1):
        digest = entry_hash(prev_hash, item.meeting_id, seq, item.at, item.actor_id,
                            item.kind, item.data)
        entries.append(AuditEntry(meeting_id=item.meeting_id, seq=seq, at=item.at,
                                  actor_id=item.actor_id, kind=item.kind,
                                  data_json=canonical(item.data).decode("utf-8"),
                                  prev_hash=prev_hash, hash=digest))
        prev_hash = digest
    return entries


async def _append(session: AsyncSession, items: list[_Buffered]) -> list[AuditEntry]:
    """Chain `items` (all of one meeting) onto its chain: one head lock for all of them."""
    meeting_id = items[0].meeting_id
    known = _known_heads(session)
    hint = known.get(meeting_id) if known is not None else None
    if known is not None and hint is not None:
        entries = _chain(items, *hint)
        moved = await session.exec(_EXTEND, params={  # type: ignore[call-overload]
            "b_meeting_id": meeting_id, "b_seq": hint[0], "b_hash": hint[1],
            "new_seq": entries[-1].seq, "new_hash": entries[-1].hash})
        if moved.rowcount == 1:  # the head was the hint: extended, locked until the commit
            session.add_all(entries)
            await session.flush()
            known[meeting_id] = (entries[-1].seq, entries[-1].hash)
            return entries
    claim = {"b_meeting_id": meeting_id, "n": len(items)}
    head = (await session.exec(_CLAIM, params=claim)).first()  # type: ignore[call-overload]
    if head is None:  # the meeting's first entry
        await insert_ignore(session, AuditHead, meeting_id=meeting_id, seq=0, hash=GENESIS)
        head = (await session.exec(_CLAIM, params=claim)).one()  # type: ignore[call-overload]
    last_seq, prev_hash = head
    entries = _chain(items, last_seq - len(items), prev_hash)
    session.add_all(entries)
    await session.exec(_SET_HASH, params={  # type: ignore[call-overload]
        "b_meeting_id": meeting_id, "new_hash": entries[-1].hash})
    await session.flush()
    if known is not None:
        known[meeting_id] = (entries[-1].seq, entries[-1].hash)
    return entries


@asynccontextmanager
async def buffered(session: AsyncSession) -> AsyncIterator[None]:
    """Collect the entries recorded in this block and chain them all at its end, in order:
    a batch of ballots extends the chain once instead of once per ballot."""
    if session.info.get(_BUFFER) is not None:
        raise RuntimeError("audit buffers do not nest")
    session.info[_BUFFER] = []
    try:
        yield
        pending: list[_Buffered] = session.info[_BUFFER]
    finally:
        session.info.pop(_BUFFER, None)
    by_meeting: dict[int, list[_Buffered]] = {}
    for item in pending:
        by_meeting.setdefault(item.meeting_id, []).append(item)
    for items in by_meeting.values():
        await _append(session, items)


def buffer_mark(session: AsyncSession) -> int:
    """Where the buffer ends now; `buffer_rewind` drops what a failed change recorded."""
    return len(session.info.get(_BUFFER) or [])


def buffer_rewind(session: AsyncSession, mark: int) -> None:
    pending: list[_Buffered] | None = session.info.get(_BUFFER)
    if pending is not None:
        del pending[mark:]


async def head_hash(session: AsyncSession, meeting_id: int) -> str:
    rows = await session.exec(select(AuditHead.hash).where(AuditHead.meeting_id == meeting_id))
    return rows.first() or GENESIS


@dataclass(frozen=True)
class ChainReport:
    meeting_id: int
    entries: int
    ok: bool
    problem: str = ""  # what is wrong, in one line
    bad_seq: int | None = None  # the first entry that does not verify

    def as_dict(self) -> dict[str, Any]:
        return {"meeting_id": self.meeting_id, "entries": self.entries, "ok": self.ok,
                "problem": self.problem, "bad_seq": self.bad_seq}


async def verify_meeting(session: AsyncSession, meeting_id: int) -> ChainReport:
    rows = await session.exec(select(AuditEntry).where(AuditEntry.meeting_id == meeting_id)
                              .order_by(col(AuditEntry.seq)))
    prev, expected_seq, count = GENESIS, 1, 0
    for entry in rows.all():
        count += 1
        if entry.seq != expected_seq:
            return ChainReport(meeting_id, count, False,
                               f"entry {expected_seq} is missing (found {entry.seq})", expected_seq)
        if entry.prev_hash != prev:
            return ChainReport(meeting_id, count, False,
                               f"entry {entry.seq} does not link to entry {entry.seq - 1}", entry.seq)
        try:
            data = json.loads(entry.data_json)
        except ValueError:
            return ChainReport(meeting_id, count, False, f"entry {entry.seq} is not JSON", entry.seq)
        digest = entry_hash(prev, meeting_id, entry.seq, entry.at, entry.actor_id, entry.kind, data)
        if digest != entry.hash:
            return ChainReport(meeting_id, count, False,
                               f"entry {entry.seq} was changed after it was written", entry.seq)
        prev, expected_seq = entry.hash, expected_seq + 1
    head = await session.get(AuditHead, meeting_id)
    head_seq, head_hash_ = (head.seq, head.hash) if head else (0, GENESIS)
    if head_seq != count or head_hash_ != prev:
        return ChainReport(meeting_id, count, False,
                           f"the chain ends at entry {count} but its head says {head_seq}",
                           count + 1)
    return ChainReport(meeting_id, count, True)


async def verify_chain(session: AsyncSession, meeting_id: int | None = None) -> list[ChainReport]:
    """Verify one meeting's chain, or every chain in the database."""
    if meeting_id is not None:
        return [await verify_meeting(session, meeting_id)]
    heads = await session.exec(select(AuditHead.meeting_id))
    entries = await session.exec(select(AuditEntry.meeting_id).distinct())
    ids = sorted(set(heads.all()) | set(entries.all()))
    return [await verify_meeting(session, m) for m in ids]


def entry_dict(entry: AuditEntry) -> dict[str, Any]:
    return {"seq": entry.seq, "at": entry.at.isoformat(), "actor_id": entry.actor_id,
            "kind": entry.kind, "data": json.loads(entry.data_json),
            "prev_hash": entry.prev_hash, "hash": entry.hash}


async def entries(session: AsyncSession, meeting_id: int, after_seq: int = 0,
                  limit: int = 500) -> list[AuditEntry]:
    rows = await session.exec(select(AuditEntry)
                              .where(AuditEntry.meeting_id == meeting_id,
                                     AuditEntry.seq > after_seq)
                              .order_by(col(AuditEntry.seq)).limit(limit))
    return list(rows.all())
