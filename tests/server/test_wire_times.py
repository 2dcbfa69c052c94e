"""Every time the server sends is ISO 8601 UTC (docs/protocol.md, Conventions), on SQLite and on
PostgreSQL alike (times read back from the database, not only fresh ones): meetings, the
procedure's state and pushes, the audit log, unit history. Annotations and documents:
tests/server/documents/test_live.py."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.conftest import Harness
from tests.server.procedure_helpers import add_item, close_all, open_demo
from tests.server.wire_times import assert_wire_times


async def test_meeting_procedure_audit_and_unit_times_are_iso_8601_utc(hopso: Harness) -> None:
    started = datetime.now(UTC)
    m, people = await open_demo(hopso, "thuky", "daibieu")
    chair, thuky, delegate = people["chutri"], people["thuky"], people["daibieu"]
    try:
        item = await add_item(thuky, m, "Kế hoạch năm 2026", planned_minutes=10)
        await thuky.ok("agenda:set_current", {"meeting_id": m, "item_id": item["id"]})
        pushed = await delegate.wait_for("agenda:changed",
                                         lambda e: e["agenda"]["current"] is not None)
        assert_wire_times(pushed, "server_time", "agenda.current.since", since=started)
        await delegate.ok("attendance:check_in", {"meeting_id": m, "mode": "in_person"})
        asked = await delegate.ok("floor:request", {"meeting_id": m})
        await chair.ok("floor:grant", {"meeting_id": m, "request_id": asked["request_id"]})
        vote = await chair.ok("vote:open", {"meeting_id": m, "agenda_item_id": item["id"],
                                            "question": "Thông qua?"})
        closed = await chair.ok("vote:close", {"meeting_id": m, "vote_id": vote["id"]})
        assert_wire_times(closed, "opened_at", "closed_at", since=started)

        _, state = await chair.http.call("GET", f"/api/meetings/{m}/procedure")
        assert_wire_times(state, "server_time", "agenda.server_time", "agenda.current.since",
                          "floor.holder.requested_at", "floor.holder.granted_at",
                          "votes[0].opened_at", "votes[0].closed_at", since=started)
        _, audit = await chair.http.call("GET", f"/api/meetings/{m}/audit?after=0")
        assert_wire_times(audit, "entries[0].at", since=started)
        status, meeting = await chair.http.call("POST", f"/api/meetings/{m}/close")
        assert status == 200
        _, meeting = await chair.http.call("GET", f"/api/meetings/{m}")
        assert_wire_times(meeting, "opened_at", "closed_at", since=started)
        assert_wire_times(meeting, "starts_at")
    finally:
        await close_all(people)

    admin = await hopso.login("quantri")
    _, tree = await admin.call("GET", "/api/units")
    unit = tree["units"][0]
    await admin.call("PATCH", f"/api/units/{unit['id']}", {"name": "Tỉnh Quảng Bình (mới)"})
    _, history = await admin.call("GET", f"/api/units/{unit['id']}/history")
    assert_wire_times(history, "events[0].at", "events[1].at")
