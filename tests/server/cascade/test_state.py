"""The meeting state seam across three in-process nodes: the owner's journal reaches every
node in order (and after an outage), reports reach the owner once, refusals come back."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field
from sqlmodel import select

from rooms.cascade_models import CascadeReport
from server.cascade import reports as reports_module
from server.cascade.schemas import NodeError, NodeSchema
from server.cascade.topics import Entry, Report, Topic
from server.core import keys
from tests.server.cascade.tree import (
    Tree,
    cascaded_meeting,
    cut_link,
    following,
    restore_link,
    state,
    tree,
    until,
)


class Note(NodeSchema):
    text: str = Field(max_length=100)


def install_test_topics(t: Tree) -> tuple[dict[str, list[tuple[int, int, str]]],
                                         list[tuple[str, str, str]]]:
    """`test.note` down (each node records what it applied), `test.up` up (the owner
    records what it received; "late ..." is refused as a ballot after its vote closed)."""
    applied: dict[str, list[tuple[int, int, str]]] = {"city": [], "ward": []}
    received: list[tuple[str, str, str]] = []

    def applier(unit: str) -> Any:
        async def apply(meeting_id: int, entry: Entry) -> None:
            applied[unit].append((meeting_id, entry.seq, entry.data["text"]))
        return apply

    async def receive(meeting_id: int, via: str, report: Report) -> dict[str, Any]:
        if report.data["text"].startswith("late"):
            raise NodeError("late", "the vote closed before this ballot arrived")
        received.append((via, report.origin, report.data["text"]))
        return {"counted": True}

    for h, unit in ((t.province, "province"), (t.city, "city"), (t.ward, "ward")):
        state(h).register(Topic("test.note", Note, "down", apply=applier(unit)
                                if unit != "province" else None))
        state(h).register(Topic("test.up", Note, "up", receive=receive))
    return applied, received


async def test_the_owners_journal_reaches_every_node_in_order_and_after_an_outage(
        tmp_path: Path) -> None:
    async with tree(tmp_path) as t:
        applied, _ = install_test_topics(t)
        _, meeting_id, key, city_id, ward_id = await cascaded_meeting(t)
        owner = state(t.province)
        for text in ("một", "hai", "ba"):
            await owner.publish(meeting_id, "test.note", {"text": text})
        for h in (t.city, t.ward):
            await following(h, key, 3)
        assert applied["city"] == [(city_id, 1, "một"), (city_id, 2, "hai"), (city_id, 3, "ba")]
        assert applied["ward"] == [(ward_id, 1, "một"), (ward_id, 2, "hai"), (ward_id, 3, "ba")]

        # The ward's WAN link is cut: the owner goes on; the ward catches up when it is back.
        await cut_link(t.ward)
        for text in ("bốn", "năm"):
            await owner.publish(meeting_id, "test.note", {"text": text})
        await following(t.city, key, 5)
        assert [e[2] for e in applied["ward"]] == ["một", "hai", "ba"]
        restore_link(t.ward)
        await following(t.ward, key, 5)
        assert [e[1:] for e in applied["ward"]] == [(1, "một"), (2, "hai"), (3, "ba"),
                                                   (4, "bốn"), (5, "năm")]
        # An ephemeral push (a laser pointer) is applied and never stored.
        await owner.publish(meeting_id, "test.note", {"text": "tia"}, durable=False)
        await until(lambda: _has(applied["ward"], "tia"), 5, "the pointer at the ward")
        assert await state(t.ward).journal.last(key) == 5


async def _has(items: list[tuple[int, int, str]], text: str) -> bool:
    return any(item[2] == text for item in items)


async def test_reports_reach_the_owner_once_even_through_an_outage_and_refusals_come_back(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with tree(tmp_path) as t:
        _, received = install_test_topics(t)
        _, _, key, _, ward_id = await cascaded_meeting(t)
        ward = state(t.ward)
        first = await ward.report(ward_id, "test.up", {"text": "phiếu 1"})
        await until(lambda: _delivered(t, first.id), 10, "the ward's report delivered")
        await until(lambda: _true(received), 10, "the owner received it")
        assert received == [("city", "ward", "phiếu 1")]

        # Cut: reports are stored at the ward (that is the acknowledgement), then delivered.
        await cut_link(t.ward)
        stored = [await ward.report(ward_id, "test.up", {"text": f"phiếu {n}"})
                  for n in (2, 3)]
        late = await ward.report(ward_id, "test.up", {"text": "late phiếu 4"})
        assert [await ward.reports.state_of(r.id) for r in stored] == ["pending", "pending"]
        restore_link(t.ward)
        for report in stored:
            await until(_delivered_probe(t, report.id), 10, "delivered after the cut")
        await until(lambda: _refused(t, late.id), 10, "the late report refused at the ward")
        assert received == [("city", "ward", "phiếu 1"), ("city", "ward", "phiếu 2"),
                            ("city", "ward", "phiếu 3")]
        assert "late: the vote closed" in str(await ward.reports.state_of(late.id))

        # A replayed report (the same id again, at the city and at the owner) is answered
        # from the first one's record, never applied twice.
        replay = {"id": stored[0].id, "meeting": key, "origin": "ward", "topic": "test.up",
                  "data": {"text": "phiếu 2"}}
        assert (await state(t.city).reports.receive("ward", replay))["state"] == "stored"
        assert (await state(t.province).reports.receive("city", replay))["state"] == "applied"
        assert [r[2] for r in received].count("phiếu 2") == 1


async def _true(items: list[Any]) -> bool:
    return bool(items)


async def _delivered(t: Tree, report_id: str) -> bool:
    return await state(t.ward).reports.state_of(report_id) == "delivered"


def _delivered_probe(t: Tree, report_id: str) -> Any:
    return lambda: _delivered(t, report_id)


async def _refused(t: Tree, report_id: str) -> bool:
    return str(await state(t.ward).reports.state_of(report_id)).startswith("refused")


async def test_a_child_cannot_report_for_another_node_nor_an_unknown_topic(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with tree(tmp_path) as t:
        _, received = install_test_topics(t)
        _, _, key, _, _ = await cascaded_meeting(t)
        owner = state(t.province).reports
        caplog.set_level(logging.WARNING)
        cases = {
            "another node": {"origin": "province", "topic": "test.up"},
            "a node not invited": {"origin": "ward:khac", "topic": "test.up"},
            "an unknown topic": {"origin": "city", "topic": "test.nothing"},
            "a down topic": {"origin": "city", "topic": "test.note"},
        }
        for n, (what, fields) in enumerate(cases.items()):
            outcome = await owner.receive("city", {"id": f"{n:032x}", "meeting": key,
                                                   "data": {"text": what}, **fields})
            assert outcome["state"] == "refused", (what, outcome)
        assert received == []


async def test_the_chair_sees_which_invited_sites_are_unreachable(tmp_path: Path) -> None:
    async with tree(tmp_path) as t:
        install_test_topics(t)
        chair, meeting_id, _, _, ward_id = await cascaded_meeting(t)

        async def reachable() -> dict[str, bool]:
            status, body = await chair.call("GET", f"/api/meetings/{meeting_id}/sites")
            assert status == 200, body
            return {s["unit"]: s["reachable"] for s in body["sites"]}

        async def both() -> bool:
            return await reachable() == {"city": True, "ward": True}
        await until(both, 10, "city and ward reachable from the province")
        await cut_link(t.ward)
        await state(t.ward).report(ward_id, "test.up", {"text": "giữ lại"})

        async def ward_cut() -> bool:
            return await reachable() == {"city": True, "ward": False}
        await until(ward_cut, 10, "the ward shown unreachable at the province")
        secretary = await t.ward.login("thuky")
        status, body = await secretary.call("GET", f"/api/meetings/{ward_id}/sites")
        assert status == 200 and body["held_reports"] == 1, body


async def test_a_city_cut_off_from_the_province_holds_at_most_its_bound_and_loses_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The city's link up is cut while the ward keeps reporting (a flood, or a long outage):
    the city stores the ward's reports only up to its bound (MAX_HELD, 3 here) and refuses
    the rest `busy`; the ward keeps them (acknowledged there) and sends them again. Once the
    city's link is back, every report reaches the province once, in the ward's order.
    Before, the city stored all of them (no parent ever said `busy`)."""
    monkeypatch.setattr(reports_module, "MAX_HELD", 3)
    async with tree(tmp_path) as t:
        _, received = install_test_topics(t)
        _, _, key, _, ward_id = await cascaded_meeting(t)
        await cut_link(t.city)
        texts = [f"mực {n}" for n in range(6)]
        for text in texts:
            await state(t.ward).report(ward_id, "test.up", {"text": text})

        async def held() -> tuple[int, int]:
            """The ward's reports pending at the city and at the ward."""
            out = []
            for h in (t.city, t.ward):
                async with h.server.app[keys.DB].session() as s:
                    out.append(len((await s.exec(select(CascadeReport).where(
                        CascadeReport.key == key, CascadeReport.origin == "ward",
                        CascadeReport.state == "pending"))).all()))
            return out[0], out[1]

        async def city_full() -> bool:
            return await held() == (3, 3)
        await until(city_full, 10, "3 reports held at the city, 3 still at the ward")
        assert state(t.ward).reports.held_back() >= 1  # refused busy: sent again later
        await asyncio.sleep(2.5)  # the ward sends them again (after 1 s, then 2 s): refused
        assert await held() == (3, 3)
        assert sum("refused busy" in r.message for r in caplog.records) == 1  # once

        restore_link(t.city)

        async def all_received() -> bool:
            return len(received) >= len(texts)
        await until(all_received, 40, "every report at the province")
        assert [text for _, _, text in received] == texts

        async def drained() -> bool:  # each settled once its answer is back
            return await held() == (0, 0)
        await until(drained, 10, "no report of the ward pending anywhere")
