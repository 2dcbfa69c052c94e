"""Issue 13's latency targets, hop by hop: nothing on the way waits for a commit it does not
need, shown by stalling those commits for SLOW_S (a disk that stalls, a writer holding the
lock). A presenter's page turn reaches the tablets of every node without waiting for any
node's commit of it (the owner pushes it live before journaling it, and each node applies
what it received while it stores it); a ward delegate's request to speak reaches the
province chair without waiting for the city's commit of it (the city passes it on while it
stores it, and answers the ward "stored" only once it is), nor for the ward's commit of it
into its outbox (sent up beside that commit; the delegate's ack still waits for it)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from rooms.cascade_models import CascadeReport
from rooms.db import Database
from server.cascade.reports import Reports
from server.core import keys
from tests.conftest import Client
from tests.server.cascade.test_documents_across import member, mirrored_doc
from tests.server.cascade.test_votes_across import province_room, ward_delegates
from tests.server.cascade.tree import Tree, cascaded_meeting, following, state, tree, until
from tests.server.documents_support import Listener, make_pdf, upload_ready

SLOW_S = 3.0  # a stalled commit, far longer than a hop in-process


class StallingCommits:
    """A node's database as its journal or its outbox uses it, whose every commit of a
    session that wrote something first waits SLOW_S."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.db.session() as s:
            commit = s.commit

            async def stalled() -> None:
                if s.new or s.dirty or s.deleted:
                    await asyncio.sleep(SLOW_S)
                await commit()
            s.commit = stalled  # type: ignore[method-assign]
            yield s


async def presenting(t: Tree, tmp_path: Path
                     ) -> tuple[Listener, dict[str, Listener], dict[str, Any], str]:
    """The province chair presents a 5-page document; a delegate's tablet at the city and at
    the ward follow (page 0 seen at both)."""
    _, meeting_id, key, city_id, ward_id = await cascaded_meeting(t)
    doc = await upload_ready(t.province, meeting_id, make_pdf(tmp_path, pages=5),
                             title="Báo cáo")
    tablets = {}
    for unit, h, mirror_id in (("city", t.city, city_id), ("ward", t.ward, ward_id)):
        delegate = await member(h, mirror_id, "daibieu")

        async def there(d: Client = delegate, m: int = mirror_id) -> dict[str, Any] | None:
            return await mirrored_doc(d, m, "Báo cáo")
        await until(there, 20, f"the document at the {unit}")
        tablets[unit] = await Listener.open(h, delegate, mirror_id)
    chair = await Listener.open(t.province, await t.province.login("chutri"), meeting_id)
    view = {"document_id": doc["id"], "page": 0, "zoom": 1.0, "scroll_x": 0.0, "scroll_y": 0.0}
    assert (await chair.call("present:update", view))["ok"]
    for tablet in tablets.values():
        await tablet.wait_for("present:state", lambda s: s["page"] == 0, timeout=15)
    return chair, tablets, view, key


async def test_a_page_turn_reaches_every_node_without_waiting_for_a_journal_commit(
        tmp_path: Path) -> None:
    async with tree(tmp_path) as t:
        chair, tablets, view, key = await presenting(t, tmp_path)
        journals = [state(h).journal for h in (t.province, t.city)]
        for journal in journals:
            journal.db = StallingCommits(journal.db)  # type: ignore[assignment]
        try:
            started = time.monotonic()
            # (the chair's own acknowledgement comes once the owner has journaled the turn)
            turned = asyncio.ensure_future(chair.call("present:update", {**view, "page": 3}))
            for unit, tablet in tablets.items():
                await tablet.wait_for("present:state", lambda s: s["page"] == 3, timeout=30)
                took = time.monotonic() - started
                assert took < SLOW_S / 2, f"page 3 at the {unit} after {took:.2f} s"
            assert (await turned)["ok"]
            # The journaled copy follows, stored at each node, and is not shown twice.
            seq = await state(t.province).journal.last(key)
            await following(t.ward, key, seq)
            await asyncio.sleep(0.5)
            for unit, tablet in tablets.items():
                shown = [s for s in tablet.of("present:state") if s["page"] == 3]
                assert len(shown) == 1, (unit, shown)
        finally:
            for journal in journals:
                journal.db = journal.db.db  # type: ignore[attr-defined]


async def test_a_request_to_speak_reaches_the_owner_without_waiting_for_the_city_commit(
        tmp_path: Path) -> None:
    async with tree(tmp_path) as t:
        _, meeting_id, _, _, ward_id = await cascaded_meeting(t)
        chair, _, _ = await province_room(t, meeting_id)
        speaker = (await ward_delegates(t.ward, ward_id))["daibieu"]
        city = state(t.city).reports

        async def settled() -> bool:  # the check-ins' reports, on their way before this
            return not any([await state(h).reports.pending_counts() for h in (t.ward, t.city)])
        await until(settled, 30, "nothing on its way up")
        city.db = StallingCommits(city.db)  # type: ignore[assignment]
        try:
            started = time.monotonic()
            asked = await speaker.ok("floor:request", {"meeting_id": ward_id})
            await chair.wait_for("floor:changed", lambda e: any(
                q.get("origin") == "ward" for q in e["queue"]), 30)
            took = time.monotonic() - started
            assert took < SLOW_S / 2, f"the chair had the request after {took:.2f} s"
            # The ward is answered "stored" once the city has it stored, not before.
            ward = state(t.ward).reports
            report = await until(lambda: _only_report(t), 10, "the ward's report")
            assert await ward.state_of(report) == "pending"
            await until(lambda: _delivered(ward, report), 30, "the ward's report delivered")
            assert await city.state_of(report) in ("pending", "delivered")
            await until(lambda: _delivered(city, report), 30, "the city's copy delivered")
            assert asked["request_id"]
        finally:
            city.db = city.db.db  # type: ignore[attr-defined]


async def _only_report(t: Tree) -> str | None:
    async with t.ward.server.app[keys.DB].session() as s:
        rows = (await s.exec(select(CascadeReport).where(
            CascadeReport.topic == "floor.request"))).all()
    return rows[0].id if len(rows) == 1 else None


async def _delivered(reports: Reports, report: str) -> bool:
    return await reports.state_of(report) == "delivered"


OUTBOX_STALL_S = 6.0  # longer: what is asserted is an order, kept under a loaded box's lag


class StallingOutbox:
    """A node's database whose every commit that adds a report to its outbox first waits
    OUTBOX_STALL_S, whoever commits it (the methods of the one Database object are
    patched)."""

    def __init__(self, db: Database) -> None:
        self.db, self.original = db, db.session

    def __enter__(self) -> StallingOutbox:
        self.db.session = self.session  # type: ignore[method-assign]
        return self

    def __exit__(self, *_: object) -> None:
        self.db.session = self.original  # type: ignore[method-assign]

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.original() as s:
            commit = s.commit

            async def stalled() -> None:
                if any(isinstance(row, CascadeReport) for row in s.new):
                    await asyncio.sleep(OUTBOX_STALL_S)
                await commit()
            s.commit = stalled  # type: ignore[method-assign]
            yield s


async def test_a_request_to_speak_leaves_the_ward_beside_its_outbox_commit_acked_after_it(
        tmp_path: Path) -> None:
    async with tree(tmp_path) as t:
        _, meeting_id, _, _, ward_id = await cascaded_meeting(t)
        chair, _, _ = await province_room(t, meeting_id)
        speaker = (await ward_delegates(t.ward, ward_id))["daibieu"]

        async def settled() -> bool:  # the check-ins' reports, on their way before this
            return not any([await state(h).reports.pending_counts() for h in (t.ward, t.city)])
        await until(settled, 30, "nothing on its way up")
        ward = state(t.ward).reports
        with StallingOutbox(t.ward.server.app[keys.DB]):
            started = time.monotonic()
            asked = asyncio.ensure_future(speaker.ok("floor:request", {"meeting_id": ward_id}))
            await chair.wait_for("floor:changed", lambda e: any(
                q.get("origin") == "ward" for q in e["queue"]), 30)
            # In the chair's queue while the ward's commit of it is still stalled: before,
            # after it (the delegate was acknowledged first, then the report went up).
            took = time.monotonic() - started
            assert not asked.done(), f"the chair had the request after its ack ({took:.2f} s)"
            # The delegate is told once the ward's outbox holds the request, not before.
            assert (await asked)["request_id"]
            assert time.monotonic() - started >= OUTBOX_STALL_S
            report = await _only_report(t)
            assert report is not None
            assert await ward.state_of(report) in ("pending", "delivered")
            await until(lambda: _delivered(ward, report), 30, "the ward's report delivered")
        # Queued once at the province, though it may have gone up twice (ahead, then from
        # the outbox if its answer came before the commit).
        await asyncio.sleep(0.5)
        queue = chair.heard["floor:changed"][-1]["queue"]
        assert [q["origin"] for q in queue] == ["ward"], queue


async def test_a_request_to_speak_answered_before_the_ward_commit_goes_up_once(
        tmp_path: Path) -> None:
    """Sent up ahead of the ward's outbox commit and answered "stored" before that commit is
    done, the request is settled by that answer once the commit is: the city receives it
    once, not a second time from the ward's outbox (before: twice, each time a round trip
    and a settle at every node on the way)."""
    async with tree(tmp_path) as t:
        _, meeting_id, _, _, ward_id = await cascaded_meeting(t)
        chair, _, _ = await province_room(t, meeting_id)
        speaker = (await ward_delegates(t.ward, ward_id))["daibieu"]

        async def settled() -> bool:
            return not any([await state(h).reports.pending_counts() for h in (t.ward, t.city)])
        await until(settled, 30, "nothing on its way up")
        city = state(t.city).reports
        received: list[str] = []
        receive = city.receive

        async def counted(via: str, item: dict[str, Any]) -> dict[str, Any]:
            if item.get("topic") == "floor.request":
                received.append(item["id"])
            return await receive(via, item)
        city.receive = counted  # type: ignore[method-assign]
        ward = state(t.ward).reports
        with StallingOutbox(t.ward.server.app[keys.DB]):
            asked = asyncio.ensure_future(speaker.ok("floor:request", {"meeting_id": ward_id}))
            await chair.wait_for("floor:changed", lambda e: any(
                q.get("origin") == "ward" for q in e["queue"]), 30)
            assert received and not asked.done()  # answered while the commit is stalled
            await asked
            report = await _only_report(t)
            assert report is not None
            await until(lambda: _delivered(ward, report), 30, "the ward's report delivered")
        await asyncio.sleep(1.0)  # a second delivery from the outbox would be on its way
        assert received == [report], received
