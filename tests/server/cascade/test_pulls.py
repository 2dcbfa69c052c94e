"""What a child's periodic asks cost its parent (server/cascade/parent_link.py `_ping`, the
parent's `meetings` and `journal` events in server/cascade/link.py): every child asks every
2 s, so a child missing nothing costs its parent one read (what is offered, with the last
seq of each meeting's journal from memory) and no pull; a push it missed while linked is
still pulled at its next ping."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from rooms.models import Meeting, MeetingStatus
from server.cascade.parent_link import PING_INTERVAL_S
from server.cascade.reports import REFUSED
from server.core import keys
from tests.server.cascade.tree import cascaded_meeting, following, node, state, tree, until
from tests.sql_statements import COMMIT, statements


def _refusal(n: int) -> dict[str, Any]:
    """An entry every node applies and nobody acts on (a refusal for a node not there)."""
    return {"id": f"r{n}", "origin": "nowhere", "code": "late", "message": "x"}


async def test_a_child_missing_nothing_costs_its_parent_one_read_per_ping(
        tmp_path: Path) -> None:
    """The ward is up to date: over two of its pings it pulls no journal from the city
    (before: one pull per meeting per ping); `meetings` is one read at the city (before:
    two, and two per meeting), and a pull after the last entry only the dispatcher's scope
    read, not the journal's."""
    async with tree(tmp_path) as t:
        _, _, key, _, _ = await cascaded_meeting(t)
        entry = await state(t.province).journal.append(key, REFUSED, _refusal(1))
        await following(t.ward, key, entry.seq)
        city = node(t.city)
        dispatch = city.dispatcher.dispatch
        asked = await asked_over_two_pings(city)
        assert "meetings" in asked and "journal" not in asked, asked

        sid = next(link.sid for link in city.children.values() if link.unit == "ward")
        db = t.city.server.app[keys.DB]
        with statements(db) as offering:
            answer = await dispatch("meetings", sid, {})
        assert answer["ok"] and answer["result"]["journals"] == {key: entry.seq}, answer
        assert len([q for q in offering if q != COMMIT]) == 1, offering
        with statements(db) as pulling:
            answer = await dispatch("journal", sid, {"meeting": key, "after": entry.seq})
        assert answer["ok"] and answer["result"] == {"entries": [], "more": False}, answer
        assert not pulling.reading("cascadeentry"), pulling
        assert len([q for q in pulling if q != COMMIT]) == 1, pulling  # the scope


async def test_a_push_missed_while_linked_is_pulled_at_the_next_ping(tmp_path: Path) -> None:
    """The ward loses one push (its link stays up): the city's marks say it is behind, and
    it pulls that entry at its next ping."""
    async with tree(tmp_path) as t:
        _, _, key, _, _ = await cascaded_meeting(t)
        journal = state(t.ward).journal
        ingest = journal.ingest
        lost: list[int] = []

        async def losing(k: str, entries: list[dict[str, Any]]) -> bool:
            if not lost and any(e["topic"] == REFUSED for e in entries):
                lost.extend(e["seq"] for e in entries)
                return True  # as if it never came
            return await ingest(k, entries)
        journal.ingest = losing  # type: ignore[method-assign,assignment]
        entry = await state(t.province).journal.append(key, REFUSED, _refusal(1))
        await until(lambda: asyncio.sleep(0, bool(lost)), 10, "the push lost at the ward")
        assert lost == [entry.seq]
        await following(t.city, key, entry.seq)

        async def there() -> bool:
            return await journal.last(key) >= entry.seq
        await until(there, 3 * PING_INTERVAL_S, "the lost entry pulled at the ward")


async def test_a_new_mirror_is_followed_before_its_journal_has_anything(
        tmp_path: Path) -> None:
    """Its first pull (nothing to pull yet) is what makes the parent push its entries to the
    child: a child not behind still pulls a meeting it does not follow on this link yet, so
    the first entry arrives pushed, not at the next ping."""
    async with tree(tmp_path) as t:
        _, _, key, _, _ = await cascaded_meeting(t)

        async def followed() -> bool:
            return any(key in link.journals for link in node(t.city).children.values()
                       if link.unit == "ward")
        await until(followed, 2 * PING_INTERVAL_S, "the ward following the meeting")
        started = asyncio.get_running_loop().time()
        entry = await state(t.province).journal.append(key, REFUSED, _refusal(1))
        await following(t.ward, key, entry.seq)
        assert asyncio.get_running_loop().time() - started < PING_INTERVAL_S / 2


async def test_a_withdrawn_invitation_stops_the_pushes_at_the_next_sweep(
        tmp_path: Path) -> None:
    """The province withdraws the ward's invitation: the city's sweep of its children's
    scope (every child in one read) stops pushing the meeting's journal to the ward, and the
    ward, offered it no more, closes its mirror."""
    async with tree(tmp_path) as t:
        chair, meeting_id, key, _, ward_id = await cascaded_meeting(t)
        city = node(t.city)

        def ward_follows() -> bool:
            return any(key in link.journals for link in city.children.values()
                       if link.unit == "ward")
        await until(lambda: asyncio.sleep(0, ward_follows()), 2 * PING_INTERVAL_S,
                    "the ward following the meeting")
        status, body = await chair.call("PUT", f"/api/meetings/{meeting_id}/nodes",
                                        {"nodes": ["city"], "seats": {"city": 5}})
        assert status == 200, body
        await until(lambda: asyncio.sleep(0, not ward_follows()), 4 * PING_INTERVAL_S,
                    "the city no longer pushing to the ward")

        async def closed() -> bool:
            async with t.ward.server.app[keys.DB].session() as s:
                meeting = await s.get(Meeting, ward_id)
            return meeting is not None and meeting.status is MeetingStatus.closed
        await until(closed, 4 * PING_INTERVAL_S, "the ward's mirror closed")


async def test_a_parent_of_several_processes_sends_no_marks_and_its_child_pulls_each_ping(
        tmp_path: Path) -> None:
    """With Redis another process of the parent may have stored entries this one does not
    know of: it sends no `journals`, answers every pull from the table, and the child pulls
    every meeting at every ping, as before."""
    async with tree(tmp_path) as t:
        _, _, key, _, _ = await cascaded_meeting(t)
        city = node(t.city)
        city.journal_in_memory = False
        dispatch = city.dispatcher.dispatch
        asked = await asked_over_two_pings(city)
        assert asked.count("journal") >= 2, asked
        sid = next(link.sid for link in city.children.values() if link.unit == "ward")
        answer = await dispatch("meetings", sid, {})
        assert answer["ok"] and "journals" not in answer["result"], answer
        entry = await state(t.province).journal.append(key, REFUSED, _refusal(1))
        await following(t.ward, key, entry.seq)


async def asked_over_two_pings(city: Any) -> list[str]:
    """The names of the events the city's children sent it over two ping intervals."""
    asked: list[str] = []
    dispatch = city.dispatcher.dispatch

    async def recording(name: str, sid: str, data: Any) -> dict[str, Any]:
        asked.append(name)
        return await dispatch(name, sid, data)
    city.dispatcher.dispatch = recording
    try:
        await asyncio.sleep(2 * PING_INTERVAL_S + 0.5)
    finally:
        city.dispatcher.dispatch = dispatch
    return asked
