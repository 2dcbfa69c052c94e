"""The meeting's true states (issue 14): closed (and its procedure closed out), paused,
reopened, each audited; stale tabs acting on a closed meeting or vote are told so and
change nothing; a vote with a time limit is closed by the server when it runs out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Harness, start_harness
from tests.server.procedure_helpers import Member, add_item, close_all, open_demo


async def snapshot(member: Member, m: int) -> dict[str, Any]:
    return dict(await member.ok("procedure:state", {"meeting_id": m}))


async def audit_kinds(member: Member, m: int) -> list[str]:
    status, body = await member.http.call("GET", f"/api/meetings/{m}/audit")
    assert status == 200 and body["chain"]["ok"], body
    return [e["kind"] for e in body["entries"]]


def listen(member: Member, event: str) -> list[dict[str, Any]]:
    heard: list[dict[str, Any]] = []
    member.sio.on(event, heard.append)
    return heard


async def test_closing_stops_the_clock_ends_the_floor_and_the_vote(hopso: Harness) -> None:
    m, people = await open_demo(hopso, "thuky", "daibieu", "daibieu2")
    chair, thuky, d1, d2 = (people[n] for n in ("chutri", "thuky", "daibieu", "daibieu2"))
    item = await add_item(thuky, m, "Kế hoạch chuyển đổi số", planned_minutes=10)
    await thuky.ok("agenda:set_current", {"meeting_id": m, "item_id": item["id"]})
    for member in (d1, d2):
        await member.ok("attendance:check_in", {"meeting_id": m, "mode": "online"})
    asked = await d1.ok("floor:request", {"meeting_id": m})
    await chair.ok("floor:grant", {"meeting_id": m, "request_id": asked["request_id"]})
    vote = await chair.ok("vote:open", {"meeting_id": m, "agenda_item_id": item["id"],
                                        "question": "Tán thành?"})
    await d1.ok("vote:cast", {"meeting_id": m, "vote_id": vote["id"], "option": 0, "seq": 1})

    status, _ = await chair.http.call("POST", f"/api/meetings/{m}/close")
    assert status == 200
    state = await snapshot(d2, m)
    assert state["status"] == "closed"
    assert state["agenda"]["current"] is None  # the item's clock stopped
    assert state["agenda"]["items"][0]["spent_seconds"] >= 0
    assert state["floor"]["holder"] is None
    (closed,) = state["votes"]
    assert closed["status"] == "closed" and closed["result"]["totals"] == [1, 0, 0]
    await d2.wait_for("vote:updated", lambda e: e["vote"]["final"])
    kinds = await audit_kinds(chair, m)
    assert kinds.count("meeting_closed") == 1 and kinds[-2:] == ["meeting_closed", "vote_closed"]

    # Stale tabs: a ballot into the closed vote, a chair's action, a check-in. Each is told
    # the meeting has ended (or the vote is closed), and nothing moves.
    before = (await snapshot(chair, m))["seq"]
    assert await d2.error("vote:cast", {"meeting_id": m, "vote_id": vote["id"], "option": 1,
                                        "seq": 1}) in ("meeting_closed", "vote_closed")
    assert await chair.error("vote:open", {"meeting_id": m, "agenda_item_id": item["id"],
                                           "question": "Lại?"}) == "meeting_closed"
    assert await chair.error("floor:grant", {"meeting_id": m, "request_id": asked["request_id"]}
                             ) == "meeting_closed"
    assert await d2.error("attendance:check_in", {"meeting_id": m, "mode": "online"}) \
        == "meeting_closed"
    assert await d2.error("floor:request", {"meeting_id": m}) == "meeting_closed"
    after = await snapshot(chair, m)
    assert after["seq"] == before and after["votes"][0]["result"]["totals"] == [1, 0, 0]
    await close_all(people)


async def test_pause_resume_and_reopen_are_true_states_and_audited(hopso: Harness) -> None:
    m, people = await open_demo(hopso, "thuky", "daibieu")
    chair, thuky, d1 = people["chutri"], people["thuky"], people["daibieu"]
    updates = listen(d1, "meeting:updated")
    item = await add_item(thuky, m, "Báo cáo tình hình", planned_minutes=5)
    await thuky.ok("agenda:set_current", {"meeting_id": m, "item_id": item["id"]})

    status, body = await chair.http.call("POST", f"/api/meetings/{m}/pause")
    assert status == 200 and body["status"] == "paused", body
    state = await snapshot(d1, m)
    assert state["status"] == "paused"
    assert state["agenda"]["current"]["item_id"] == item["id"]
    assert state["agenda"]["current"]["since"] is None  # its clock stands still
    assert await d1.error("floor:request", {"meeting_id": m}) == "meeting_paused"
    assert (await chair.http.call("POST", f"/api/meetings/{m}/pause"))[0] == 409
    assert (await d1.http.call("POST", f"/api/meetings/{m}/resume"))[0] == 403

    status, body = await chair.http.call("POST", f"/api/meetings/{m}/resume")
    assert status == 200 and body["status"] == "open"
    assert (await snapshot(d1, m))["agenda"]["current"]["since"] is not None
    await d1.ok("attendance:check_in", {"meeting_id": m, "mode": "online"})
    await d1.ok("floor:request", {"meeting_id": m})

    assert (await chair.http.call("POST", f"/api/meetings/{m}/reopen"))[0] == 409  # not closed
    assert (await chair.http.call("POST", f"/api/meetings/{m}/close"))[0] == 200
    status, body = await chair.http.call("POST", f"/api/meetings/{m}/reopen")
    assert status == 200 and body["status"] == "open" and body["closed_at"] is None
    await d1.ok("attendance:check_in", {"meeting_id": m, "mode": "online"})
    kinds = await audit_kinds(chair, m)
    for kind in ("meeting_paused", "meeting_resumed", "meeting_closed", "meeting_reopened"):
        assert kind in kinds, kinds
    assert kinds.index("meeting_closed") < kinds.index("meeting_reopened")
    assert [u["status"] for u in updates if "status" in u][-1] == "open"
    assert "paused" in [u["status"] for u in updates]
    await close_all(people)


@pytest.fixture
async def short_limits(tmp_path: Path, harness_database_url: str | None
                       ) -> AsyncIterator[Harness]:
    """Votes' time limits from 4 s (Settings.vote_time_limit_min_s; 10 s by default, which
    test_sockets' bad input checks): a limit runs out within the test, not 10 s later."""
    harness = await start_harness(tmp_path, harness_database_url, vote_time_limit_min_s=4)
    yield harness
    await harness.close()
    await harness.server.close()


async def test_a_vote_with_a_time_limit_closes_by_itself(short_limits: Harness) -> None:
    m, people = await open_demo(short_limits, "thuky", "daibieu")
    chair, thuky, d1 = people["chutri"], people["thuky"], people["daibieu"]
    item = await add_item(thuky, m, "Biểu quyết có thời hạn")
    await d1.ok("attendance:check_in", {"meeting_id": m, "mode": "online"})
    assert await chair.error("vote:open", {"meeting_id": m, "agenda_item_id": item["id"],
                                           "question": "Q?", "time_limit_seconds": 3}) \
        == "invalid"  # under the (4 s) minimum
    vote = await chair.ok("vote:open", {"meeting_id": m, "agenda_item_id": item["id"],
                                        "question": "Tán thành?", "time_limit_seconds": 4})
    assert vote["closes_at"] is not None
    await d1.ok("vote:cast", {"meeting_id": m, "vote_id": vote["id"], "option": 0, "seq": 1})
    final = await d1.wait_for("vote:updated", lambda e: e["vote"]["final"], timeout=20)
    assert final["vote"]["result"]["totals"] == [1, 0, 0]
    # A ballot from a tab that did not see the close: refused, the result stays.
    assert await d1.error("vote:cast", {"meeting_id": m, "vote_id": vote["id"], "option": 1,
                                        "seq": 2}) == "vote_closed"
    _, audit = await chair.http.call("GET", f"/api/meetings/{m}/audit")
    closed = [e for e in audit["entries"] if e["kind"] == "vote_closed"]
    assert closed and closed[-1]["data"]["reason"] == "time_limit"
    await close_all(people)
