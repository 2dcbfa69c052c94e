"""Another node's people, as the placeholder users a cascade node makes for them (a ward
delegate's request to speak at the province, a document's author), are not accounts here:
the admin's user lists do not show them, the admin cannot enable them or give them a
password, and they never log in, even when their row says enabled with a password."""

from __future__ import annotations

from rooms.remote_floor import proxy_user
from server.cascade.topic.documents_people import Person, local_user
from server.core import keys
from tests.conftest import Harness


async def test_other_nodes_people_are_not_listed_changed_or_logged_in(hopso: Harness) -> None:
    app = hopso.server.app
    async with app[keys.DB].session() as s:
        speaker = await proxy_user(s, "ward", 7, "Vũ Thị Ngọc Xa")
        author_id = await local_user(s, Person(origin="city", user=3, name="Đinh Văn Khắc Xa"))
        await s.commit()
        assert speaker.id is not None
        speaker_id, speaker_name = speaker.id, speaker.username
    admin = await hopso.login("quantri")

    status, body = await admin.call("GET", "/api/users")
    assert status == 200
    listed = {u["id"] for u in body["users"]}
    assert speaker_id not in listed and author_id not in listed
    assert not any(u["username"].startswith("~") for u in body["users"])
    assert "quantri" in {u["username"] for u in body["users"]}  # local accounts still are
    page = await admin.session.get(f"{hopso.base}/admin/users")
    html = await page.text()
    assert page.status == 200 and "quantri" in html
    assert speaker_name not in html and "Vũ Thị Ngọc Xa" not in html

    for patch in ({"disabled": False}, {"password": "mat-khau-dai-1"}, {"role": "admin"}):
        status, body = await admin.call("PATCH", f"/api/users/{speaker_id}", patch)
        assert status == 404, (patch, body)

    # Even a row made enabled with a known password (by hand, in the database) cannot log in.
    password = "mat-khau-dai-1"
    hashed = await app[keys.PASSWORDS].hash(password)
    async with app[keys.DB].session() as s:
        for uid in (speaker_id, author_id):
            row = await s.get(type(speaker), uid)
            assert row is not None
            row.disabled, row.password_hash = False, hashed
            s.add(row)
        await s.commit()
    for name in (speaker_name, speaker_name.upper(), f" {speaker_name}"):
        status, body = await hopso.anonymous().call("POST", "/api/login",
                                                    {"username": name, "password": password})
        assert status == 401, (name, body)
