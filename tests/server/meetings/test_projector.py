"""The projector view: the site operator of an invited site opens it without a delegate's
rights, as do the chair and secretary; delegates get 403, outsiders 404."""

from __future__ import annotations

from tests.conftest import Harness
from tests.server.core.test_realtime import demo_meeting_id

HTML = {"Accept": "text/html"}


async def test_the_projector_is_for_the_room_operator_chair_and_secretary(
        hopso_sqlite: Harness) -> None:
    m = await demo_meeting_id(hopso_sqlite)
    for name in ("kythuat", "chutri", "thuky"):
        client = await hopso_sqlite.login(name)
        status, page = await client.call("GET", f"/meetings/{m}/projector", headers=HTML)
        assert status == 200 and 'id="projector"' in page and "/static/js/projector.js" in page, name
    delegate = await hopso_sqlite.login("daibieu")
    status, page = await delegate.call("GET", f"/meetings/{m}/projector", headers=HTML)
    assert status == 403 and "Không được phép" in page
    status, body = await delegate.call("GET", f"/meetings/{m}/projector")
    assert status == 403 and body["error"]["code"] == "forbidden"
    admin = await hopso_sqlite.login("quantri")  # not a member
    assert (await admin.call("GET", f"/meetings/{m}/projector"))[0] == 404
    assert (await admin.call("GET", "/meetings/99999999/projector"))[0] == 404
    anonymous = hopso_sqlite.anonymous()
    status, _ = await anonymous.call("GET", f"/meetings/{m}/projector", headers=HTML)
    assert status == 302
