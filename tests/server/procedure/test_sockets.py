"""The procedure over socket.io: a whole sitting, live events with seq, and bad input."""

from __future__ import annotations

import asyncio
from typing import Any

from server.core import keys
from server.procedure.events import FloorChanged
from tests.conftest import Harness
from tests.server.procedure_helpers import add_item, close_all, join, open_demo

DELEGATES = ("daibieu", "daibieu2", "daibieu3")


async def test_a_sitting_check_in_floor_and_vote_live(hopso: Harness) -> None:
    floor_published: list[FloorChanged] = []

    async def listener(event: FloorChanged) -> None:
        floor_published.append(event)
    hopso.server.app[keys.BUS].subscribe(FloorChanged, listener)

    m, people = await open_demo(hopso, "thuky", *DELEGATES)
    chair, thuky, d1 = people["chutri"], people["thuky"], people["daibieu"]
    item = await add_item(thuky, m, "Kế hoạch chuyển đổi số năm 2026", planned_minutes=15)
    heard = await d1.wait_for("agenda:changed", lambda e: len(e["agenda"]["items"]) == 1)
    assert heard["meeting_id"] == m and heard["seq"] >= 1
    await thuky.ok("agenda:set_current", {"meeting_id": m, "item_id": item["id"]})
    current = await d1.wait_for("agenda:changed", lambda e: e["agenda"]["current"] is not None)
    assert current["agenda"]["current"]["remaining_seconds"] <= 15 * 60

    for name in DELEGATES:
        result = await people[name].ok("attendance:check_in", {"meeting_id": m,
                                                               "mode": "in_person"})
        assert result["status"] == "in_person"
    att = await chair.wait_for("attendance:changed",
                               lambda e: e["attendance"]["quorum"]["present"] == 3)
    assert att["attendance"]["quorum"]["reached"] is True  # 3 of 4 voting members

    asked = await d1.ok("floor:request", {"meeting_id": m})
    queue = await chair.wait_for("floor:changed", lambda e: len(e["queue"]) == 1)
    assert queue["queue"][0]["name"] == "Lê Minh Tuấn"
    assert queue["queue"][0]["item"] == "Kế hoạch chuyển đổi số năm 2026"
    await chair.ok("floor:grant", {"meeting_id": m, "request_id": asked["request_id"],
                                   "limit_seconds": 180})
    given = await d1.wait_for("floor:changed", lambda e: e["holder"] is not None)
    assert given["holder"]["user_id"] == d1.http.user["id"]
    assert given["holder"]["limit_seconds"] == 180
    assert floor_published[-1] == FloorChanged(m, d1.http.user["id"], "Lê Minh Tuấn",
                                               "Phòng họp UBND thành phố")
    await chair.ok("floor:end", {"meeting_id": m})
    await d1.wait_for("floor:changed", lambda e: e["holder"] is None and e["totals"]["people"])
    assert floor_published[-1] == FloorChanged(m, None)

    vote = await chair.ok("vote:open", {"meeting_id": m, "agenda_item_id": item["id"],
                                        "question": "Thông qua kế hoạch chuyển đổi số?",
                                        "base": "all_members"})
    assert vote["status"] == "open" and vote["options"] == ["agree", "disagree", "abstain"]
    pending = await chair.ok("vote:pending", {"meeting_id": m, "vote_id": vote["id"]})
    assert pending["count"] == 3 and len(pending["names"]) == 3
    for name, option in zip(DELEGATES, (0, 0, 2)):
        await people[name].ok("vote:cast", {"meeting_id": m, "vote_id": vote["id"],
                                            "option": option, "seq": 1})
    live = await chair.wait_for("vote:updated", lambda e: e["vote"]["id"] == vote["id"] and
                                (e["vote"]["result"] or {}).get("cast") == 3)
    assert live["vote"]["result"]["totals"] == [2, 0, 1] and not live["vote"]["final"]
    closed = await chair.ok("vote:close", {"meeting_id": m, "vote_id": vote["id"]})
    assert closed["final"] and closed["result"]["totals"] == [2, 0, 1]
    for name in DELEGATES:
        final = await people[name].wait_for("vote:updated", lambda e: e["vote"]["final"])
        assert final["vote"]["result"]["totals"] == [2, 0, 1]
        assert final["vote"]["result"]["adopted"] is False  # 2 of 4 members: not a majority
        assert final["vote"]["result"]["percentages"] == [50.0, 0.0, 25.0]
    # Whatever order they arrived in, the newest seq carries the final result.
    seqs = [e["seq"] for e in d1.heard["vote:updated"]]
    newest = max(d1.heard["vote:updated"], key=lambda e: e["seq"])
    assert newest["vote"]["final"] and all(isinstance(q, int) for q in seqs)

    state = await d1.ok("procedure:state", {"meeting_id": m})
    assert state["me"]["voted"] == [vote["id"]] and state["me"]["attendance"] == "in_person"
    assert state["seq"] >= max(seqs)
    await close_all(people)


async def test_withdrawn_and_skipped_requests_are_acked_with_their_status_and_leave_the_queue(
        hopso: Harness) -> None:
    m, people = await open_demo(hopso, *DELEGATES[:1])
    chair, d1 = people["chutri"], people["daibieu"]
    await add_item(chair, m, "Báo cáo tài chính", planned_minutes=5)
    await d1.ok("attendance:check_in", {"meeting_id": m, "mode": "in_person"})
    for event, by, status in (("floor:withdraw", d1, "withdrawn"), ("floor:skip", chair, "skipped")):
        asked = await d1.ok("floor:request", {"meeting_id": m})
        await chair.wait_for("floor:changed", lambda e: len(e["queue"]) == 1)
        ack = await by.ok(event, {"meeting_id": m, "request_id": asked["request_id"]})
        assert ack == {"request_id": asked["request_id"], "status": status}
        await chair.wait_for("floor:changed", lambda e: e["queue"] == [])
    await close_all(people)


async def test_bad_input_is_refused_and_tallies_do_not_move(hopso: Harness) -> None:
    m, people = await open_demo(hopso, "thuky", "daibieu", "daibieu2", "kythuat")
    chair, thuky, d1, d2 = (people[n] for n in ("chutri", "thuky", "daibieu", "daibieu2"))
    item = await add_item(thuky, m, "Dự toán ngân sách")
    # Agenda edits and the procedure belong to the secretary and the chair.
    assert await d1.error("agenda:set_current", {"meeting_id": m, "item_id": item["id"]}) \
        == "forbidden"
    status, _ = await d1.http.call("POST", f"/api/meetings/{m}/agenda", {"title": "Thêm"})
    assert status == 403
    assert await d1.error("vote:open", {"meeting_id": m, "agenda_item_id": item["id"],
                                        "question": "?"}) == "forbidden"
    assert await d1.error("floor:grant", {"meeting_id": m, "request_id": 1}) == "forbidden"
    # Out of order: nothing to end, no roll call to answer, no such request, an unknown item.
    assert await chair.error("floor:end", {"meeting_id": m}) == "no_floor"
    assert await people["kythuat"].error("rollcall:answer", {
        "meeting_id": m, "site_id": people["kythuat"].http.user["site_id"],
        "headcount": 3}) == "roll_call_closed"
    assert await chair.error("floor:grant", {"meeting_id": m, "request_id": 999}) == "not_found"
    assert await chair.error("vote:open", {"meeting_id": m, "agenda_item_id": 999,
                                           "question": "?"}) == "not_found"
    for seconds in (9, 0, 3 * 3600 + 1):  # a time limit is 10 s to 3 h (the default minimum)
        assert await chair.error("vote:open", {
            "meeting_id": m, "agenda_item_id": item["id"], "question": "Hạn?",
            "time_limit_seconds": seconds}) == "invalid"
    assert await d1.error("floor:request", {"meeting_id": m}) == "not_checked_in"
    await d1.ok("attendance:check_in", {"meeting_id": m, "mode": "online"})
    vote = await chair.ok("vote:open", {"meeting_id": m, "agenda_item_id": item["id"],
                                        "question": "Thông qua dự toán?"})
    ref = {"meeting_id": m, "vote_id": vote["id"]}
    assert await d2.error("vote:cast", {**ref, "option": 0, "seq": 1}) == "not_checked_in"
    assert await thuky.error("vote:cast", {**ref, "option": 0, "seq": 1}) == "forbidden"
    assert await d1.error("vote:cast", {**ref, "option": "0", "seq": 1}) == "invalid"
    assert await d1.error("vote:cast", {**ref, "option": 0}) == "invalid"  # no seq
    # Five simultaneous ballots from one tablet: one counts, the others are refused.
    acks = await asyncio.gather(*(d1.emit("vote:cast", {**ref, "option": i % 3, "seq": i + 1})
                                  for i in range(5)))
    assert sum(a["ok"] for a in acks) == 1, acks
    assert {a["error"]["code"] for a in acks if not a["ok"]} == {"already_voted"}
    assert await d1.error("vote:cast", {**ref, "option": 1, "seq": 9}) == "already_voted"
    await chair.ok("vote:close", ref)
    assert await d1.error("vote:cast", {**ref, "option": 1, "seq": 3}) == "vote_closed"
    assert await chair.error("vote:close", ref) == "vote_closed"
    final = await d1.ok("procedure:state", {"meeting_id": m})
    assert sum(final["votes"][0]["result"]["totals"]) == 1
    # Flooding the floor queue: asking and withdrawing over and over is rate limited.
    codes = []
    for _ in range(7):
        ack = await d1.emit("floor:request", {"meeting_id": m})
        codes.append(ack["ok"] or ack["error"]["code"])
        if ack["ok"]:
            await d1.ok("floor:withdraw", {"meeting_id": m,
                                           "request_id": ack["result"]["request_id"]})
    assert codes[:5] == [True] * 5 and codes[5:] == ["rate_limited"] * 2
    await close_all(people)


async def test_non_members_and_other_meetings_are_not_revealed(hopso_sqlite: Harness) -> None:
    h = hopso_sqlite
    m, people = await open_demo(h, "thuky", "daibieu")
    other = await join(h, "chutri", m)  # a second tab of the chair; used for the other meeting
    status, meeting = await people["thuky"].http.call("POST", "/api/meetings", {
        "title": "Họp khác", "unit_id": people["thuky"].http.user["unit_id"],
        "starts_at": "2026-12-01T08:00:00+07:00"})
    assert status == 201
    status, _ = await people["thuky"].http.call("POST", f"/api/meetings/{meeting['id']}/open")
    assert status == 200
    item = await add_item(people["thuky"], m, "Mục của cuộc họp chính")
    # An item of meeting m cannot be voted on in the other meeting, even by its secretary.
    status, mine = await people["thuky"].http.call("POST", f"/api/meetings/{meeting['id']}/agenda",
                                                   {"title": "Mục khác"})
    assert status == 201
    admin = await join_as_outsider(h)
    for event, payload in [("procedure:state", {"meeting_id": m}),
                           ("attendance:check_in", {"meeting_id": m, "mode": "online"}),
                           ("vote:cast", {"meeting_id": m, "vote_id": 1, "option": 0, "seq": 1})]:
        ack = await admin.call(event, payload, timeout=5)
        assert ack["error"]["code"] == "not_found", (event, ack)
    # The chair of m is not a member of the other meeting.
    assert await other.error("vote:open", {"meeting_id": meeting["id"],
                                           "agenda_item_id": mine["id"],
                                           "question": "?"}) == "not_found"
    assert await people["chutri"].error("vote:open", {"meeting_id": m,
                                                      "agenda_item_id": mine["id"],
                                                      "question": "?"}) == "not_found"
    assert item["id"] != mine["id"]
    await admin.disconnect()
    await other.sio.disconnect()
    await close_all(people)


async def join_as_outsider(h: Harness) -> Any:
    from tests.server.core.test_realtime import connect
    return await connect(h, await h.login("quantri"))
