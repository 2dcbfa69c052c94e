"""Procedure REST routes: agenda editing and who may do it, settings, the audit page and
the verification command."""

from __future__ import annotations

import asyncio
import contextlib
import io
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from server.admin import audit_verify
from testkit.processes import ROOT
from tests.conftest import Harness
from tests.server.core.test_realtime import demo_meeting_id
from tests.server.documents_support import make_pdf, upload


async def test_secretary_edits_the_agenda_and_others_cannot(hopso: Harness,
                                                           tmp_path: Path) -> None:
    m = await demo_meeting_id(hopso)
    thuky, delegate = await hopso.login("thuky"), await hopso.login("daibieu")
    base = f"/api/meetings/{m}/agenda"
    ids = []
    for title in ("Khai mạc", "Báo cáo", "Thảo luận"):
        status, body = await thuky.call("POST", base, {"title": title, "planned_minutes": 10})
        assert status == 201, body
        ids.append(body["id"])
    status, moved = await thuky.call("POST", f"{base}/{ids[2]}/move", {"position": 1})
    assert status == 200 and moved["order"] == [ids[2], ids[0], ids[1]]
    status, _ = await thuky.call("PATCH", f"{base}/{ids[0]}",
                                 {"title": "Khai mạc hội nghị", "presenter_name": "Chủ trì"})
    assert status == 200
    status, doc = await upload(thuky, m, make_pdf(tmp_path, pages=1))
    assert status == 202, doc
    link = f"{base}/{ids[1]}/documents"
    assert (await thuky.call("POST", link, {"document_id": doc["id"]}))[0] == 201
    assert (await thuky.call("DELETE", f"{link}/{doc['id']}"))[0] == 200
    assert (await thuky.call("DELETE", f"{base}/{ids[2]}"))[0] == 200
    status, view = await delegate.call("GET", base)
    assert status == 200
    assert [(i["title"], i["position"]) for i in view["items"]] == [("Khai mạc hội nghị", 1),
                                                                   ("Báo cáo", 2)]
    for method, path, body in [("POST", base, {"title": "Chen ngang"}),
                               ("PATCH", f"{base}/{ids[0]}", {"title": "Sửa"}),
                               ("POST", f"{base}/{ids[0]}/move", {"position": 2}),
                               ("DELETE", f"{base}/{ids[0]}", None),
                               ("PUT", f"/api/meetings/{m}/conclusions", {"text": "x"}),
                               ("PUT", f"/api/meetings/{m}/procedure/settings",
                                {"quorum_rule": "two_thirds"}),
                               ("POST", f"/api/meetings/{m}/minutes", None)]:
        status, answer = await delegate.call(method, path, body)
        assert status == 403 and set(answer) == {"error"}, (method, path, status)
    outsider = await hopso.login("quantri")
    for path in (base, f"/api/meetings/{m}/procedure", f"/api/meetings/{m}/minutes"):
        assert (await outsider.call("GET", path))[0] == 404
    assert (await hopso.anonymous().call("GET", base))[0] == 401
    status, bad = await thuky.call("POST", base, {"title": "   "})
    assert status == 400 and bad["error"]["code"] == "invalid"
    status, bad = await thuky.call("POST", base, {"title": "x", "planned_minutes": "10"})
    assert status == 400
    status, _ = await thuky.call("PUT", f"/api/meetings/{m}/procedure/settings",
                                 {"quorum_rule": "two_thirds"})
    assert status == 200
    _, state = await delegate.call("GET", f"/api/meetings/{m}/procedure")
    assert state["attendance"]["quorum"]["rule"] == "two_thirds"
    assert state["me"]["role"] == "delegate" and "vote" in state["me"]["actions"]


async def test_audit_page_and_command_detect_a_changed_entry(hopso_sqlite: Harness) -> None:
    h = hopso_sqlite
    m = await demo_meeting_id(h)
    thuky = await h.login("thuky")
    for title in ("Khai mạc", "Báo cáo"):
        assert (await thuky.call("POST", f"/api/meetings/{m}/agenda", {"title": title}))[0] == 201
    admin = await h.login("quantri")
    status, page = await admin.call("GET", "/admin/audit", headers={"Accept": "text/html"})
    assert status == 200 and 'id="audit-summary" class="ok"' in page, page
    assert (await thuky.call("GET", "/admin/audit", headers={"Accept": "text/html"}))[0] == 403
    data_dir = str(h.settings.data_dir)
    verify = [sys.executable, "-m", "server.admin.audit_verify", "--data-dir", data_dir]
    ok = await run(verify)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"meeting {m}: 2 entries, ok" in ok.stdout
    with contextlib.closing(sqlite3.connect(h.settings.data_dir / "hopso.sqlite3")) as raw, raw:
        raw.execute("UPDATE auditentry SET data_json = replace(data_json, 'Khai', 'Bế') "
                    "WHERE seq = 1")
    # The same command in-process (a second interpreter start-up costs seconds).
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = await asyncio.to_thread(audit_verify.main, verify[3:])
    assert code == 1 and "BROKEN at entry 1" in out.getvalue(), out.getvalue()
    status, page = await admin.call("GET", "/admin/audit", headers={"Accept": "text/html"})
    assert status == 200 and 'id="audit-summary" class="error"' in page and 'class="broken"' in page
    assert await asyncio.to_thread(audit_verify.main, ["--data-dir", data_dir + "/nowhere"]) == 2


async def run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(subprocess.run, command, cwd=ROOT, capture_output=True,
                                   text=True, timeout=60, check=False)


@pytest.mark.parametrize("body", [{"receipt": "x"}, {"receipt": 5}, {}])
async def test_receipt_check_validates_its_input(hopso_sqlite: Harness, body: object) -> None:
    m = await demo_meeting_id(hopso_sqlite)
    delegate = await hopso_sqlite.login("daibieu")
    status, answer = await delegate.call("POST", f"/api/meetings/{m}/receipts/check", body)
    assert status == 400 and answer["error"]["code"] == "invalid"
