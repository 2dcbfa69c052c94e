"""The administrators' audit page lists entries, filters them (meeting, action, date) and
exports them as CSV; bad filters are a 400, never a 500."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from tests.conftest import Harness
from tests.server.procedure_helpers import open_demo

HTML = {"Accept": "text/html"}


async def test_the_audit_page_lists_filters_and_exports_entries(hopso: Harness) -> None:
    m, people = await open_demo(hopso, "daibieu", "daibieu2")
    for name in ("daibieu", "daibieu2"):
        await people[name].ok("attendance:check_in", {"meeting_id": m, "mode": "in_person"})
    await people["daibieu"].ok("floor:request", {"meeting_id": m})
    admin = await hopso.login("quantri")

    status, page = await admin.call("GET", "/admin/audit", headers=HTML)
    assert status == 200 and page.count('data-kind="checked_in"') == 2
    assert 'data-kind="floor_requested"' in page and "Lê Minh Tuấn" in page
    status, page = await admin.call("GET", f"/admin/audit?meeting={m}&action=checked_in",
                                    headers=HTML)
    assert page.count('data-kind="checked_in"') == 2 and 'data-kind="floor_requested"' not in page
    today = datetime.now(ZoneInfo(hopso.settings.timezone)).date()
    status, page = await admin.call("GET", f"/admin/audit?from={today}&to={today}", headers=HTML)
    assert page.count('data-kind="checked_in"') == 2
    yesterday = today - timedelta(days=1)
    status, page = await admin.call("GET", f"/admin/audit?to={yesterday}", headers=HTML)
    assert 'id="audit-none"' in page
    status, page = await admin.call("GET", "/admin/audit?meeting=999999", headers=HTML)
    assert status == 200 and 'id="audit-none"' in page

    status, text = await admin.call("GET", f"/admin/audit/export?action=checked_in&meeting={m}")
    rows = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))
    assert status == 200 and [r["action"] for r in rows] == ["checked_in", "checked_in"]
    assert {r["actor"] for r in rows} == {"Lê Minh Tuấn", people["daibieu2"].http.user["full_name"]}
    assert [int(r["seq"]) for r in rows] == sorted(int(r["seq"]) for r in rows)

    for bad in ("meeting=abc", "from=2026-13-01", "to=9999-12-31", "meeting=-1"):
        status, _ = await admin.call("GET", f"/admin/audit?{bad}", headers=HTML)
        assert status == 400, bad
        status, body = await admin.call("GET", f"/admin/audit/export?{bad}")
        assert status == 400 and body["error"]["code"] == "invalid", bad
    chair = people["chutri"].http
    assert (await chair.call("GET", "/admin/audit/export"))[0] == 403
