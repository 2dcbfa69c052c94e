from tests.conftest import Harness


async def units_by_name(client) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    _, body = await client.call("GET", "/api/units")
    found: dict[str, dict] = {}

    def walk(nodes: list[dict]) -> None:
        for n in nodes:
            found[n["name"]] = n
            walk(n["children"])
    walk(body["units"])
    return found


async def test_demo_tree_is_province_city_and_fifteen_wards(hopso: Harness) -> None:
    admin = await hopso.login("quantri")
    units = await units_by_name(admin)
    city = units["Thành phố Đồng Hới"]
    assert units["Tỉnh Quảng Bình"]["children"][0]["id"] == city["id"]
    assert len(city["children"]) == 15 and all(c["sites"] for c in city["children"])


async def test_rename_reparent_and_merge_keep_history(hopso: Harness) -> None:
    admin = await hopso.login("quantri")
    units = await units_by_name(admin)
    ward, other = units["Phường Bắc Lý"], units["Phường Nam Lý"]
    province = units["Tỉnh Quảng Bình"]
    status, _ = await admin.call("PATCH", f"/api/units/{ward['id']}", {"name": "Phường Bắc Lý mới"})
    assert status == 200
    status, _ = await admin.call("PATCH", f"/api/units/{ward['id']}",
                                 {"parent_id": province["id"], "move": True})
    assert status == 200
    status, _ = await admin.call("POST", f"/api/units/{other['id']}/merge", {"into_id": ward["id"]})
    assert status == 200
    after = await units_by_name(admin)
    assert "Phường Nam Lý" not in after
    merged = after["Phường Bắc Lý mới"]
    assert merged["parent_id"] == province["id"]
    assert {s["name"] for s in merged["sites"]} >= {"Điểm cầu Phường Nam Lý"}
    _, history = await admin.call("GET", f"/api/units/{ward['id']}/history")
    assert [e["change"] for e in history["events"]] == ["created", "renamed", "reparented"]
    _, history = await admin.call("GET", f"/api/units/{other['id']}/history")
    assert history["events"][-1]["change"] == "merged"


async def test_a_unit_cannot_move_under_its_own_descendant(hopso: Harness) -> None:
    admin = await hopso.login("quantri")
    units = await units_by_name(admin)
    status, body = await admin.call("PATCH", f"/api/units/{units['Tỉnh Quảng Bình']['id']}", {
        "parent_id": units["Phường Đồng Phú"]["id"], "move": True})
    assert status == 409 and "descendant" in body["error"]["message"]
    status, _ = await admin.call("POST", f"/api/units/{units['Thành phố Đồng Hới']['id']}/merge",
                                 {"into_id": units["Xã Bảo Ninh"]["id"]})
    assert status == 409


async def test_user_creation_validates_and_refuses_duplicates(hopso: Harness) -> None:
    admin = await hopso.login("quantri")
    good = {"username": "nguoimoi", "full_name": "Người Mới", "password": "mat-khau-dai-1",
            "role": "delegate"}
    status, body = await admin.call("POST", "/api/users", good)
    assert status == 201 and body["role"] == "delegate"
    status, body = await admin.call("POST", "/api/users", good)
    assert status == 409
    status, body = await admin.call("POST", "/api/users", {**good, "username": "x2",
                                                            "password": "short"})
    assert status == 400 and "password" in body["error"]["message"]
    status, _ = await admin.call("POST", "/api/users", {**good, "username": "bad name"})
    assert status == 400
    status, _ = await admin.call("PATCH", "/api/users/99999", {"disabled": True})
    assert status == 404
