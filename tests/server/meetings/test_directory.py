"""GET /api/directory: whom a scheduler may invite (units, sites, people), and who may ask."""

import pytest

from rooms.demo import CITY, DEMO_PEOPLE, PROVINCE, WARDS
from tests.conftest import Harness


@pytest.mark.parametrize("username,expected", [
    ("quantri", 200), ("chutri", 200), ("thuky", 200),
    ("daibieu", 403), ("kythuat", 403), (None, 401)])
async def test_only_people_who_schedule_meetings_see_the_directory(
        hopso: Harness, username: str | None, expected: int) -> None:
    client = await hopso.login(username) if username else hopso.anonymous()
    status, body = await client.call("GET", "/api/directory")
    assert status == expected, body
    if status != 200:
        assert set(body) == {"error"}  # never data


async def test_directory_lists_active_units_sites_and_enabled_people_only(hopso: Harness) -> None:
    admin = await hopso.login("quantri")
    status, created = await admin.call("POST", "/api/users", {
        "username": "nghihuu", "full_name": "Cán bộ đã nghỉ", "password": "a-long-password-1",
        "role": "delegate"})
    assert status == 201
    assert (await admin.call("PATCH", f"/api/users/{created['id']}", {"disabled": True}))[0] == 200
    _, tree = await admin.call("GET", "/api/units")
    city_id = tree["units"][0]["children"][0]["id"]
    status, ward = await admin.call("POST", "/api/units", {"name": "Phường Sáp Nhập",
                                                           "kind": "ward", "parent_id": city_id})
    assert status == 201
    status, _ = await admin.call("POST", f"/api/units/{ward['id']}/merge", {"into_id": city_id})
    assert status == 200

    secretary = await hopso.login("thuky")
    status, body = await secretary.call("GET", "/api/directory")
    assert status == 200
    assert set(body) == {"units", "sites", "people"}

    units = body["units"]
    assert all(set(u) == {"id", "name", "kind", "parent_id"} for u in units)
    names = [u["name"] for u in units]
    assert names[:2] == [PROVINCE, CITY] and sorted(names[2:]) == sorted(WARDS)
    assert "Phường Sáp Nhập" not in names  # merged away: inactive
    seen: set[int] = set()
    for unit in units:  # parents before their children
        assert unit["parent_id"] is None or unit["parent_id"] in seen
        seen.add(unit["id"])

    sites = body["sites"]
    assert all(set(s) == {"id", "name", "unit_id"} for s in sites)
    assert len(sites) == 17 and {s["unit_id"] for s in sites} == seen

    people = body["people"]
    assert all(set(p) == {"id", "full_name", "role", "unit_id", "site_id"} for p in people)
    assert sorted(p["full_name"] for p in people) == sorted(name for _, name, *_ in DEMO_PEOPLE)
    operator = next(p for p in people if p["role"] == "site_operator")
    assert operator["site_id"] in {s["id"] for s in sites}
    text = str(body)
    assert "password" not in text and "username" not in text and "nghihuu" not in text
    assert "$" not in text  # no hash of any kind


async def test_a_secretary_invites_from_the_directory(hopso: Harness) -> None:
    secretary = await hopso.login("thuky")
    _, directory = await secretary.call("GET", "/api/directory")
    status, meeting = await secretary.call("POST", "/api/meetings", {
        "title": "Họp chuẩn bị", "unit_id": directory["units"][1]["id"],
        "starts_at": "2026-12-05T08:00:00+07:00"})
    assert status == 201
    delegate = next(p for p in directory["people"] if p["full_name"] == "Lê Minh Tuấn")
    ward_site = next(s for s in directory["sites"] if "Đồng Phú" in s["name"])
    for body in ({"role": "delegate", "user_id": delegate["id"]},
                 {"role": "site_operator", "site_id": ward_site["id"]}):
        status, _ = await secretary.call("POST", f"/api/meetings/{meeting['id']}/members", body)
        assert status == 201
    _, members = await secretary.call("GET", f"/api/meetings/{meeting['id']}/members")
    assert {m["name"] for m in members["members"]} == {"Trần Thị Lan", "Lê Minh Tuấn",
                                                       ward_site["name"]}
