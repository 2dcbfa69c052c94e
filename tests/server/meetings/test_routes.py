from server.core import keys
from server.meetings.events import MeetingClosed
from tests.conftest import Harness


async def test_secretary_schedules_a_meeting_and_invites_people_and_sites(hopso: Harness) -> None:
    secretary = await hopso.login("thuky")
    status, meeting = await secretary.call("POST", "/api/meetings", {
        "title": "Họp giao ban tháng 12", "unit_id": secretary.user["unit_id"],
        "starts_at": "2026-12-05T08:00:00+07:00"})
    assert status == 201 and meeting["status"] == "scheduled"
    assert meeting["starts_at"].startswith("2026-12-05T01:00:00")  # stored in UTC
    delegate = await hopso.login("daibieu2")
    status, _ = await secretary.call("POST", f"/api/meetings/{meeting['id']}/members", {
        "role": "delegate", "user_id": delegate.user["id"]})
    assert status == 201
    _, mine = await delegate.call("GET", "/api/meetings")
    assert meeting["id"] in [m["id"] for m in mine["meetings"]]
    operator = await hopso.login("kythuat")
    status, _ = await operator.call("GET", f"/api/meetings/{meeting['id']}")
    assert status == 404  # their site is not invited yet
    status, _ = await secretary.call("POST", f"/api/meetings/{meeting['id']}/members", {
        "role": "site_operator", "site_id": operator.user["site_id"]})
    assert status == 201
    status, details = await operator.call("GET", f"/api/meetings/{meeting['id']}")
    assert status == 200 and details["my_role"] == "site_operator"


async def test_meeting_life_cycle_only_moves_forward(hopso: Harness) -> None:
    chair = await hopso.login("chutri")
    _, mine = await chair.call("GET", "/api/meetings")
    meeting_id = mine["meetings"][0]["id"]
    status, body = await chair.call("POST", f"/api/meetings/{meeting_id}/close")
    assert status == 409 and "scheduled to closed" in body["error"]["message"]
    assert (await chair.call("POST", f"/api/meetings/{meeting_id}/open"))[0] == 200
    assert (await chair.call("POST", f"/api/meetings/{meeting_id}/open"))[0] == 409
    status, closed = await chair.call("POST", f"/api/meetings/{meeting_id}/close")
    assert status == 200 and closed["status"] == "closed" and closed["closed_at"]


async def test_closing_a_meeting_tells_the_other_features_once(hopso: Harness) -> None:
    published: list[MeetingClosed] = []

    async def heard(event: MeetingClosed) -> None:
        published.append(event)
    hopso.server.app[keys.BUS].subscribe(MeetingClosed, heard)
    chair = await hopso.login("chutri")
    _, mine = await chair.call("GET", "/api/meetings")
    meeting_id = mine["meetings"][0]["id"]
    assert (await chair.call("POST", f"/api/meetings/{meeting_id}/close"))[0] == 409
    assert (await chair.call("POST", f"/api/meetings/{meeting_id}/open"))[0] == 200
    assert published == []  # refused, and opened: not closed
    assert (await chair.call("POST", f"/api/meetings/{meeting_id}/close"))[0] == 200
    assert published == [MeetingClosed(meeting_id)]


async def test_delegates_cannot_schedule_or_manage(hopso: Harness) -> None:
    delegate = await hopso.login("daibieu")
    status, _ = await delegate.call("POST", "/api/meetings", {
        "title": "X", "unit_id": 1, "starts_at": "2026-12-05T08:00:00"})
    assert status == 403
    status, _body = await delegate.call("POST", "/api/meetings", {
        "title": "X", "unit_id": 1, "starts_at": "next tuesday"})
    assert status in (400, 403)


async def test_bad_meeting_input_is_rejected(hopso: Harness) -> None:
    secretary = await hopso.login("thuky")
    status, body = await secretary.call("POST", "/api/meetings", {
        "title": "Họp", "unit_id": 1, "starts_at": "next tuesday"})
    assert status == 400 and "starts_at" in body["error"]["message"]
    status, _ = await secretary.call("POST", "/api/meetings", {
        "title": "Họp", "unit_id": 99999, "starts_at": "2026-12-05T08:00:00"})
    assert status == 404
    status, _ = await secretary.call("POST", "/api/meetings", {
        "title": "   ", "unit_id": 1, "starts_at": "2026-12-05T08:00:00"})
    assert status == 400
