"""Access is checked before any lock or write: a refused procedural change never waits for
the meeting's lock, never moves its seq, and a missing meeting is `not_found`."""

from __future__ import annotations

import asyncio
from typing import Any

from rooms import procedure
from server.core import keys
from server.procedure.keys import LIVE
from tests.conftest import Harness
from tests.server.core.test_realtime import connect
from tests.server.procedure_helpers import add_item, close_all, open_demo

MISSING = 987_654


def write_events(m: int, item_id: int) -> list[tuple[str, dict[str, Any]]]:
    """Every procedure event that changes something, with a payload that passes its schema."""
    return [
        ("agenda:set_current", {"meeting_id": m, "item_id": item_id}),
        ("attendance:check_in", {"meeting_id": m, "mode": "online"}),
        ("attendance:record", {"meeting_id": m, "user_id": 1, "status": "absent"}),
        ("rollcall:start", {"meeting_id": m}),
        ("rollcall:end", {"meeting_id": m}),
        ("rollcall:answer", {"meeting_id": m, "site_id": 1, "headcount": 3}),
        ("floor:request", {"meeting_id": m}),
        ("floor:withdraw", {"meeting_id": m, "request_id": 1}),
        ("floor:grant", {"meeting_id": m, "request_id": 1}),
        ("floor:skip", {"meeting_id": m, "request_id": 1}),
        ("floor:end", {"meeting_id": m}),
        ("vote:open", {"meeting_id": m, "agenda_item_id": item_id, "question": "?"}),
        ("vote:cast", {"meeting_id": m, "vote_id": 1, "option": 0, "seq": 1}),
        ("vote:close", {"meeting_id": m, "vote_id": 1}),
        ("vote:site_counts", {"meeting_id": m, "vote_id": 1, "site_id": 1, "counts": [1, 0, 0]}),
        ("vote:pending", {"meeting_id": m, "vote_id": 1}),
        ("procedure:state", {"meeting_id": m}),
    ]


def write_routes(m: int, item_id: int) -> list[tuple[str, str, Any]]:
    base = f"/api/meetings/{m}"
    return [
        ("POST", f"{base}/agenda", {"title": "x"}),
        ("PATCH", f"{base}/agenda/{item_id}", {"title": "y"}),
        ("POST", f"{base}/agenda/{item_id}/move", {"position": 0}),
        ("DELETE", f"{base}/agenda/{item_id}", None),
        ("POST", f"{base}/agenda/{item_id}/documents", {"document_id": 1}),
        ("DELETE", f"{base}/agenda/{item_id}/documents/1", None),
        ("PUT", f"{base}/procedure/settings", {"quorum_rule": "two_thirds"}),
        ("PUT", f"{base}/sites/1/seats", {"seats": 3}),
        ("PUT", f"{base}/conclusions", {"text": "z"}),
        ("POST", f"{base}/minutes", None),
        ("POST", f"{base}/receipts/check", {"receipt": "AAAA-BBBB-CCCC-DDDD"}),
    ]


async def seq_of(h: Harness, meeting_id: int) -> int:
    async with h.server.app[keys.DB].session() as s:
        return (await procedure.read_state(s, meeting_id)).seq


async def test_refusals_neither_wait_for_the_meetings_lock_nor_move_its_seq(
        hopso_sqlite: Harness) -> None:
    h = hopso_sqlite
    m, people = await open_demo(h, "thuky", "daibieu")
    item = await add_item(people["thuky"], m, "Mục một")
    outsider = await connect(h, await h.login("quantri"))  # an administrator, not a member
    before = await seq_of(h, m)
    # Whoever holds the meeting's lock, a non-member's change must be refused at once.
    async with h.server.app[LIVE].lock(m):
        for event, payload in write_events(m, item["id"]) * 3:
            ack = await asyncio.wait_for(outsider.call(event, payload, timeout=5), 3)
            assert ack["ok"] is False and ack["error"]["code"] == "not_found", (event, ack)
        for method, path, body in write_routes(m, item["id"]):
            status, answer = await asyncio.wait_for(
                h.clients[-1].call(method, path, body), 3)
            assert status == 404 and answer["error"]["code"] == "not_found", (path, answer)
        # A member whose role lacks the action is refused as early.
        ack = await asyncio.wait_for(people["thuky"].emit(
            "vote:cast", {"meeting_id": m, "vote_id": 1, "option": 0, "seq": 1}), 3)
        assert ack["error"]["code"] == "forbidden", ack
    assert await seq_of(h, m) == before
    await outsider.disconnect()
    await close_all(people)


async def test_fifty_refused_ballots_leave_the_seq_where_it_was(hopso_sqlite: Harness) -> None:
    h = hopso_sqlite
    m, people = await open_demo(h, "thuky", "daibieu")
    item = await add_item(people["thuky"], m, "Mục một")
    vote = await people["chutri"].ok("vote:open", {"meeting_id": m, "agenda_item_id": item["id"],
                                                   "question": "Tán thành?"})
    outsider = await connect(h, await h.login("quantri"))
    before = await seq_of(h, m)
    acks = []
    for first in range(0, 50, 10):  # ten at a time: within one connection's event budget
        acks += await asyncio.gather(*(outsider.call("vote:cast", {
            "meeting_id": m, "vote_id": vote["id"], "option": 0, "seq": n + 1}, timeout=5)
            for n in range(first, first + 10)))
    assert len(acks) == 50 and {a["error"]["code"] for a in acks} == {"not_found"}
    # A member refused by the vote's own rules (not checked in) moves nothing either.
    for n in range(5):
        assert await people["daibieu"].error("vote:cast", {
            "meeting_id": m, "vote_id": vote["id"], "option": 0, "seq": n + 1}) == "not_checked_in"
    assert await seq_of(h, m) == before
    await outsider.disconnect()
    await close_all(people)


async def test_a_missing_meeting_is_not_found_not_an_internal_error(
        hopso_sqlite: Harness) -> None:
    h = hopso_sqlite
    member = await connect(h, await h.login("daibieu"))
    for event, payload in write_events(MISSING, 1):
        ack = await member.call(event, payload, timeout=5)
        assert ack["ok"] is False and ack["error"]["code"] == "not_found", (event, ack)
    for method, path, body in write_routes(MISSING, 1):
        status, answer = await h.clients[-1].call(method, path, body)
        assert status == 404 and answer["error"]["code"] == "not_found", (path, answer)
    await member.disconnect()
