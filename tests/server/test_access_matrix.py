"""Every route and event × every role × own/other meeting: allowed, refused, or not revealed."""

from typing import Any

import pytest

from rooms.meetings import meetings_for
from rooms.users import find_user
from server import keys
from tests.conftest import Client, Harness
from tests.server.test_realtime import connect

ROLES = ["anonymous", "quantri", "chutri", "thuky", "daibieu", "kythuat"]
MEMBERS = {"chutri", "thuky", "daibieu", "kythuat"}  # kythuat through the invited site
MANAGERS = {"chutri", "thuky"}


async def meeting_ids(h: Harness) -> tuple[int, int, int]:
    """The demo meeting, another meeting none of the demo people belong to, and a member id
    of that other meeting."""
    admin = await h.login("quantri")
    status, _ = await admin.call("POST", "/api/users", {
        "username": "thuky2", "full_name": "Thư ký khác", "password": "another-secret-1",
        "role": "secretary", "unit_id": admin.user["unit_id"]})
    assert status == 201, _
    other = h.anonymous()
    _, body = await other.call("POST", "/api/login", {"username": "thuky2",
                                                      "password": "another-secret-1"})
    other.csrf = body["csrf_token"]
    status, meeting = await other.call("POST", "/api/meetings", {
        "title": "Họp nội bộ khác", "unit_id": admin.user["unit_id"],
        "starts_at": "2026-12-01T08:00:00+07:00"})
    assert status == 201
    _, members = await other.call("GET", f"/api/meetings/{meeting['id']}/members")
    async with h.server.app[keys.DB].session() as s:
        chair = await find_user(s, "chutri")
        own = (await meetings_for(s, chair))[0][0].id  # type: ignore[arg-type]
    return own, meeting["id"], members["members"][0]["id"]  # type: ignore[return-value]


def expected_meeting_status(role: str, own: bool, manage: bool) -> set[int]:
    if role == "anonymous":
        return {401}
    if not own or role not in MEMBERS:
        return {404}
    if manage and role not in MANAGERS:
        return {403}
    return {200, 201, 409}  # 409: allowed through, but e.g. the meeting is already open


@pytest.mark.parametrize("role", ROLES)
async def test_access_matrix(hopso: Harness, role: str) -> None:
    own, other, other_member = await meeting_ids(hopso)
    client: Client = hopso.anonymous() if role == "anonymous" else await hopso.login(role)
    if role == "anonymous":
        client.csrf = ""
    for meeting_id, is_own in ((own, True), (other, False)):
        routes: list[tuple[str, str, Any, bool]] = [
            ("GET", f"/api/meetings/{meeting_id}", None, False),
            ("GET", f"/api/meetings/{meeting_id}/members", None, False),
            ("POST", f"/api/meetings/{meeting_id}/members",
             {"role": "observer", "user_id": 1}, True),
            ("POST", f"/api/meetings/{meeting_id}/open", None, True),
            ("GET", f"/api/meetings/{meeting_id}/nodes", None, False),
            ("PUT", f"/api/meetings/{meeting_id}/nodes", {"nodes": ["ward:dong-phu"]}, True),
        ]
        for method, path, body, manage in routes:
            status, answer = await client.call(method, path, body)
            expected = expected_meeting_status(role, is_own, manage)
            if role == "anonymous" and method != "GET":
                expected = {401, 403}
            assert status in expected, (role, method, path, status, answer)
            if status in (403, 404) and isinstance(answer, dict):
                assert set(answer) == {"error"}  # never data
        page_status, _ = await client.call("GET", f"/meetings/{meeting_id}",
                                           headers={"Accept": "text/html"})
        assert page_status in ({302} if role == "anonymous" else
                               {200} if is_own and role in MEMBERS else {404}), (role, page_status)
    # A member id from the other meeting is not found through this meeting.
    status, _ = await client.call("DELETE", f"/api/meetings/{own}/members/{other_member}")
    assert status in ({401, 403} if role == "anonymous" else
                      {403} if role in MEMBERS - MANAGERS else {404}), (role, status)

    admin_routes = [("GET", "/api/units", None), ("GET", "/api/users", None),
                    ("POST", "/api/units", {"name": f"Đơn vị thử {role}", "kind": "ward"}),
                    ("POST", "/api/sites", {"name": "Phòng thử", "unit_id": 1}),
                    ("GET", "/api/units/1/history", None)]
    for method, path, body in admin_routes:
        status, _ = await client.call(method, path, body)
        if role == "anonymous":
            assert status in {401, 403}, (path, status)
        elif role == "quantri":
            assert status in {200, 201}, (path, status)
        else:
            assert status == 403, (role, path, status)

    if role == "anonymous":
        return
    sio = await connect(hopso, client)
    for meeting_id, is_own in ((own, True), (other, False)):
        ack = await sio.call("meeting:join", {"meeting_id": meeting_id}, timeout=5)
        if is_own and role in MEMBERS:
            assert ack["ok"], (role, ack)
        else:
            assert ack["error"]["code"] == "not_found", (role, ack)
    await sio.disconnect()
