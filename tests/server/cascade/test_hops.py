"""Nothing on a hop of the tree waits for an unrelated slow step (issue 13's latency
targets): an entry goes down past a node whose applier is slow, a report goes up without
waiting for the answer to the batch before it, and batches in flight at once still reach
the owner in the order they were stored; a batch that names a predecessor the parent did
not take in is refused, so nothing overtakes a refused batch."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field

from server.cascade import parent_link
from server.cascade.reports import Reports
from server.cascade.schemas import NodeSchema
from server.cascade.topics import Entry, Report, Topic
from server.core import keys
from tests.server.cascade.tree import Tree, cascaded_meeting, following, node, state, tree, until
from tests.sql_statements import statements

SLOW_S = 3.0  # a slow step, far longer than a hop in-process


class Note(NodeSchema):
    text: str = Field(max_length=100)


def topics(t: Tree, slow_apply_at_city: str = "") -> tuple[dict[str, list[str]], list[str]]:
    """`hop.note` down (applied: each node's texts), `hop.up` up (received at the owner, in
    order); the city's applier takes SLOW_S over the entry `slow_apply_at_city`."""
    applied: dict[str, list[str]] = {"city": [], "ward": []}
    received: list[str] = []

    def applier(unit: str) -> Callable[[int, Entry], Awaitable[None]]:
        async def apply(meeting_id: int, entry: Entry) -> None:
            if unit == "city" and entry.data["text"] == slow_apply_at_city:
                await asyncio.sleep(SLOW_S)
            applied[unit].append(entry.data["text"])
        return apply

    async def receive(meeting_id: int, via: str, report: Report) -> dict[str, Any]:
        await asyncio.sleep(0.01 * (hash(report.id) % 3))  # handlers that finish unevenly
        received.append(report.data["text"])
        return {}

    for h, unit in ((t.province, "province"), (t.city, "city"), (t.ward, "ward")):
        state(h).register(Topic("hop.note", Note, "down",
                                apply=None if unit == "province" else applier(unit)))
        state(h).register(Topic("hop.up", Note, "up", receive=receive))
    return applied, received


def slow_settle(reports: Reports) -> None:
    """The ward's answers to its deliveries come back late (a long round trip, a slow
    commit of their outcome)."""
    settle = reports.settle

    async def late(outcomes: list[dict[str, Any]]) -> None:
        await asyncio.sleep(SLOW_S)
        await settle(outcomes)
    reports.settle = late  # type: ignore[method-assign]


async def test_an_entry_goes_down_past_a_node_whose_applier_is_slow(tmp_path: Path) -> None:
    async with tree(tmp_path) as t:
        applied, _ = topics(t, slow_apply_at_city="một")
        _, meeting_id, key, _, _ = await cascaded_meeting(t)
        owner = state(t.province)
        started = time.monotonic()
        for text in ("một", "hai"):
            await owner.publish(meeting_id, "hop.note", {"text": text})
        await until(lambda: _equal(applied["ward"], ["một", "hai"]), 10, "both at the ward")
        took = time.monotonic() - started
        assert took < SLOW_S / 2, f"the ward waited {took:.2f} s for the city's applier"
        await following(t.city, key, 2)  # the city applies them too, in order
        assert applied["city"] == ["một", "hai"]


async def test_a_report_goes_up_without_waiting_for_the_answer_to_the_one_before(
        tmp_path: Path) -> None:
    async with tree(tmp_path) as t:
        _, received = topics(t)
        _, _, _, _, ward_id = await cascaded_meeting(t)
        ward = state(t.ward)
        slow_settle(ward.reports)
        await ward.report(ward_id, "hop.up", {"text": "một"})
        await until(lambda: _equal(received, ["một"]), 10, "the first report at the owner")
        started = time.monotonic()
        second = await ward.report(ward_id, "hop.up", {"text": "hai"})
        await until(lambda: _equal(received, ["một", "hai"]), 10, "the second at the owner")
        took = time.monotonic() - started
        assert took < SLOW_S / 2, f"the second report waited {took:.2f} s for the first's answer"
        await until(lambda: _settled(ward.reports, second.id), 10, "settled at the ward")


async def test_a_report_stored_with_the_callers_commit_goes_up_without_waiting_for_the_tick(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The outbox's fallback tick, far off from the start: the ward's delivery is idle,
    # waiting on it (the meeting is mirrored when it is offered, parent_link's `offers`).
    monkeypatch.setattr(parent_link, "PING_INTERVAL_S", 60.0)
    async with tree(tmp_path) as t:
        _, received = topics(t)
        _, _, _, _, ward_id = await cascaded_meeting(t)
        ward = state(t.ward)
        for n, own_commit in enumerate((False, True, False)):
            started = time.monotonic()
            if own_commit:  # as a topic does: with the change that made the report
                async with t.ward.server.app[keys.DB].session() as s:
                    await ward.report(ward_id, "hop.up", {"text": f"r{n}"}, s)
                    await s.commit()
            else:
                await ward.report(ward_id, "hop.up", {"text": f"r{n}"})
            await until(_arrived(received, f"r{n}"), 10, f"report {n} up")
            took = time.monotonic() - started
            assert took < SLOW_S / 2, f"report {n} waited {took:.2f} s for the delivery tick"


async def test_batches_in_flight_at_once_reach_the_owner_in_the_order_they_were_stored(
        tmp_path: Path) -> None:
    async with tree(tmp_path) as t:
        _, received = topics(t)
        _, _, _, _, ward_id = await cascaded_meeting(t)
        ward = state(t.ward)
        slow_settle(ward.reports)  # every batch's answer late: several in flight
        texts = [f"phiếu {n}" for n in range(40)]
        for text in texts:
            await ward.report(ward_id, "hop.up", {"text": text})
            await asyncio.sleep(0.005)
        await until(lambda: _equal(received, texts), 15, "every report at the owner")
        assert received == texts


async def test_a_batch_naming_a_predecessor_the_parent_did_not_take_is_refused(
        tmp_path: Path) -> None:
    async with tree(tmp_path) as t:
        topics(t)
        _, _, key, _, _ = await cascaded_meeting(t)
        city = node(t.city)
        link = next(c for c in city.children.values() if c.unit == "ward")

        def batch(n: int, after: str | None) -> dict[str, Any]:
            return {"reports": [{"id": f"{n:032x}", "meeting": key, "origin": "ward",
                                 "topic": "hop.up", "data": {"text": f"n{n}"}}],
                    "after": after}
        first = await city.dispatcher.dispatch("report", link.sid, batch(1, None))
        assert first["ok"], first
        skipped = await city.dispatcher.dispatch("report", link.sid, batch(3, f"{2:032x}"))
        assert not skipped["ok"] and skipped["error"]["code"] == "out_of_order"
        chained = await city.dispatcher.dispatch("report", link.sid, batch(2, f"{1:032x}"))
        assert chained["ok"], chained
        assert await state(t.city).reports.state_of(f"{3:032x}") is None  # nothing stored


def _arrived(items: list[str], text: str) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        return text in items
    return probe


async def _equal(items: list[str], expected: list[str]) -> bool:
    return items == expected


async def _settled(reports: Reports, report_id: str) -> bool:
    return await reports.state_of(report_id) == "delivered"


async def test_a_report_costs_its_nodes_outbox_two_reads_on_its_way_up(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The outbox is read when a report is stored (and once more when its commit is done),
    not again after each batch is sent and answered: every ballot's report is read so at
    the ward and passes the city's outbox too (about four reads each before)."""
    monkeypatch.setattr(parent_link, "PING_INTERVAL_S", 60.0)  # no fallback tick
    async with tree(tmp_path) as t:
        _, received = topics(t)
        _, _, _, _, ward_id = await cascaded_meeting(t)
        ward = state(t.ward)
        with statements(t.ward.server.app[keys.DB]) as seen:
            report = await ward.report(ward_id, "hop.up", {"text": "một"})
            await until(lambda: _equal(received, ["một"]), 10, "the report at the owner")
            await asyncio.sleep(0.5)  # answered and settled
        assert len(seen.reading("cascadereport")) <= 2, seen.reading("cascadereport")
        assert await _settled(ward.reports, report.id)
