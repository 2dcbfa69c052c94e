"""The audit chain: verifies when intact, names the first bad entry when not, never forks."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json

from sqlalchemy import text

from rooms import audit
from rooms.db import Database
from tests.rooms.conftest import Demo
from tests.sql_statements import COMMIT, statements


async def append(demo: Demo, n: int, kind: str = "test_event") -> None:
    async with demo.db.session() as s:
        await audit.record(s, demo.meeting_id, demo.users["thuky"].id, kind,
                           {"n": n, "note": "Đã điểm danh đầy đủ"})


async def report(demo: Demo) -> audit.ChainReport:
    async with demo.db.session() as s:
        return (await audit.verify_chain(s, demo.meeting_id))[0]


async def test_an_intact_chain_verifies_and_links_each_entry(demo: Demo) -> None:
    for n in range(5):
        await append(demo, n)
    assert await report(demo) == audit.ChainReport(demo.meeting_id, 5, True)
    async with demo.db.session() as s:
        rows = await audit.entries(s, demo.meeting_id)
        assert rows[0].prev_hash == audit.GENESIS
        assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(rows))
        assert [r.as_dict()["ok"] for r in await audit.verify_chain(s)] == [True]


async def test_editing_an_entry_is_detected(demo: Demo) -> None:
    for n in range(4):
        await append(demo, n)
    async with demo.db.session() as s:
        await s.exec(text("UPDATE auditentry SET data_json = :d WHERE seq = 2")  # type: ignore[call-overload]
                     .bindparams(d='{"n":99}'))
    broken = await report(demo)
    assert not broken.ok and broken.bad_seq == 2 and "changed" in broken.problem


async def test_removing_entries_is_detected_anywhere(demo: Demo) -> None:
    for n in range(4):
        await append(demo, n)
    async with demo.db.session() as s:
        await s.exec(text("DELETE FROM auditentry WHERE seq = 4"))  # type: ignore[call-overload]
    tail = await report(demo)
    assert not tail.ok and "head" in tail.problem
    async with demo.db.session() as s:
        await s.exec(text("DELETE FROM auditentry WHERE seq = 2"))  # type: ignore[call-overload]
    middle = await report(demo)
    assert not middle.ok and middle.bad_seq == 2


async def test_concurrent_appends_make_one_linear_chain(demo: Demo) -> None:
    await asyncio.gather(*(append(demo, n) for n in range(20)))
    result = await report(demo)
    assert result.ok and result.entries == 20


async def test_a_buffered_batch_extends_the_chain_once_and_drops_rewound_entries(
        demo: Demo) -> None:
    await append(demo, 0)
    async with demo.db.session() as s, audit.buffered(s):
        for n in range(1, 6):
            mark = audit.buffer_mark(s)
            assert await audit.record(s, demo.meeting_id, None, "batched", {"n": n}) is None
            if n % 2 == 0:
                audit.buffer_rewind(s, mark)  # that change was refused
    async with demo.db.session() as s:
        rows = await audit.entries(s, demo.meeting_id)
    assert [(r.seq, r.kind, r.data_json) for r in rows][1:] == [(2, "batched", '{"n":1}'), (3, "batched", '{"n":3}'),
                                   (4, "batched", '{"n":5}')]
    assert (await report(demo)).ok


async def test_an_append_after_this_process_own_extends_the_head_in_two_statements(
        demo: Demo) -> None:
    await append(demo, 0)
    with statements(demo.db) as seen:
        await append(demo, 1)
    writes = [s.split()[0] + " " + s.split()[1 if s.startswith("UPDATE") else 2]
              for s in seen if s != COMMIT]
    assert writes == ["UPDATE audithead", "INSERT auditentry"], seen  # was 3: claim, entry, hash
    assert (await report(demo)).ok


async def test_a_head_moved_by_another_process_or_a_rollback_is_claimed_and_the_chain_stays_one(
        demo: Demo) -> None:
    other = Database(demo.db.url)  # another process's connections to the same database
    try:
        for n in range(6):
            async with (other if n % 3 == 1 else demo.db).session() as s:
                await audit.record(s, demo.meeting_id, None, "test_event", {"n": n})
        with contextlib.suppress(RuntimeError):
            async with demo.db.session() as s:  # extends the head, then rolls back
                await audit.record(s, demo.meeting_id, None, "test_event", {"n": "lost"})
                raise RuntimeError("the change failed")
        with statements(demo.db) as seen:
            await append(demo, 6)
        assert len(seen.reading("audithead")) == 0
        assert any("RETURNING" in s for s in seen)  # claimed: the hint did not match
        result = await report(demo)
        assert result.ok and result.entries == 7
        async with demo.db.session() as s:
            rows = await audit.entries(s, demo.meeting_id)
        assert [json.loads(r.data_json)["n"] for r in rows] == list(range(7))
    finally:
        await other.close()
