"""The meeting archive through the real app: the secretary asks for it, its progress is
pushed, the file holds the signed minutes, the documents as presented with only the shared
ink, the recordings, the timeline and the audit chain, and `python -m documents.archive
verify` passes it offline, then fails clearly on each kind of alteration; refusals come in
the documented Error shape (docs/protocol.md, "Archive")."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import subprocess
import sys
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pymupdf
import pytest
from sqlmodel import select

from documents import archive as archive_check
from documents.signing_testca import make_ca, pkcs12_for
from rooms.procedure_models import AuditEntry
from server.core import keys
from testkit.http import Client
from tests.conftest import ROOT, Harness, start_harness
from tests.server.archive.support import add_recording, folder, track
from tests.server.documents_support import Listener, fetch, ink_op, make_pdf, upload_ready
from tests.server.procedure_helpers import Member, close_all, demo_meeting_id, open_demo

CA = make_ca()


@pytest.fixture
async def hopso(tmp_path: Path) -> AsyncIterator[Harness]:
    (tmp_path / "trust.pem").write_bytes(CA.pem)
    harness = await start_harness(tmp_path, None, signing_ca=tmp_path / "trust.pem")
    yield harness
    await harness.close()
    await harness.server.close()


@pytest.fixture
async def hopso_any_db(tmp_path: Path, harness_database_url: str | None) -> AsyncIterator[Harness]:
    """The same on SQLite and on PostgreSQL (what the archive reads is storage)."""
    (tmp_path / "trust.pem").write_bytes(CA.pem)
    harness = await start_harness(tmp_path, harness_database_url, signing_ca=tmp_path / "trust.pem")
    yield harness
    await harness.close()
    await harness.server.close()


def p12(name: str) -> dict[str, Any]:
    password = secrets.token_hex(6)
    return {"key": "pkcs12", "pkcs12": base64.b64encode(pkcs12_for(CA, name, password)).decode(),
            "password": password}


async def signed_minutes(m: int, thuky: Member, chair: Member) -> None:
    status, _ = await thuky.http.call("POST", f"/api/meetings/{m}/minutes")
    assert status == 201
    base = f"/api/meetings/{m}/minutes/1"
    for who, action, body in ((thuky, "submit", None), (chair, "approve", None),
                              (thuky, "sign", p12("Trần Thị Lan")),
                              (chair, "sign", p12("Nguyễn Văn Hùng"))):
        status, answer = await who.http.call("POST", f"{base}/{action}", body)
        assert status in (200, 201), (action, answer)


async def wait_job(http: Client, job: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        status, body = await http.call("GET", f"/api/archive/jobs/{job['id']}")
        assert status == 200, body
        if body["state"] in ("done", "failed"):
            return body  # type: ignore[no-any-return]
        assert asyncio.get_running_loop().time() < deadline, body
        await asyncio.sleep(0.1)


def verify(path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "documents.archive", "verify", str(path),
                           *extra], capture_output=True, text=True, cwd=ROOT, timeout=60)


def rewrite(src: Path, dst: Path, change: dict[str, bytes], fix_manifest: bool) -> None:
    """A copy of the archive with members replaced (and the manifest's hashes recomputed
    when `fix_manifest`: a forger who knows the format)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        manifest = json.loads(zin.read("manifest.json"))
        for info in zin.infolist():
            if info.filename != "manifest.json":
                zout.writestr(info, change.get(info.filename, zin.read(info)))
        if fix_manifest:
            for member in manifest["members"]:
                if member["path"] in change:
                    member["sha256"] = hashlib.sha256(change[member["path"]]).hexdigest()
                    member["size"] = len(change[member["path"]])
        zout.writestr("manifest.json", json.dumps(manifest))


async def test_the_archive_holds_the_record_and_verifies_offline_until_altered(
        hopso_any_db: Harness, tmp_path: Path) -> None:
    h = hopso_any_db
    m, people = await open_demo(h, "thuky", "daibieu")
    chair, thuky, delegate = people["chutri"], people["thuky"], people["daibieu"]
    progress: list[dict[str, Any]] = []
    thuky.sio.on("archive:progress", progress.append)

    doc = await upload_ready(h, m, make_pdf(tmp_path, pages=2))
    reader = await Listener.open(h, await h.login("daibieu"), m)
    assert (await reader.call("document:subscribe", {"document_id": doc["id"]}))["ok"]
    for op in (ink_op(page=0, visibility="meeting"), ink_op(page=1, visibility="private")):
        ack = await reader.call("annotation:op", {"document_id": doc["id"], "version": 1,
                                                  "op": op})
        assert ack["ok"], ack
    said = await delegate.ok("chat:send", {"meeting_id": m, "to": "all", "text": "Tôi đồng ý"})
    await delegate.ok("chat:send", {"meeting_id": m, "to": "chair", "text": "Ý kiến riêng"})
    await chair.ok("chat:hide", {"meeting_id": m, "message_id": said["id"]})
    rec_dir = "20261207T010000Z"
    files = folder(h, m, rec_dir)
    track(files / "p1-camera-aaaa.webm", 2.0, 0.1, "red")
    track(files / "p1-microphone-bbbb.webm", 2.0, 0.1)
    await add_recording(h, m, rec_dir, [
        (200, "presented", {"active": True, "document_id": doc["id"], "version": 1, "page": 0})
    ], 2200)
    await signed_minutes(m, thuky, chair)

    # Refused for a delegate (403) and hidden from a non-member (404), in the Error shape.
    status, body = await delegate.http.call("POST", f"/api/meetings/{m}/archive")
    assert status == 403 and body["error"]["code"] == "forbidden", body
    admin = await h.login("quantri")
    status, body = await admin.call("POST", f"/api/meetings/{m}/archive")
    assert status == 404 and body["error"]["code"] == "not_found", body
    assert (await admin.call("GET", f"/api/meetings/{m}/archives"))[0] == 404

    status, job = await thuky.http.call("POST", f"/api/meetings/{m}/archive")
    assert status == 202 and job["state"] in ("queued", "running"), job
    status, body = await chair.http.call("GET", f"/api/archive/jobs/{job['id']}")
    assert status == 404  # another's job is not revealed
    done = await wait_job(thuky.http, job)
    assert done["state"] == "done" and done["file"].endswith(".zip"), done
    for _ in range(100):  # the push may trail the state the GET read
        if progress and progress[-1]["state"] == "done":
            break
        await asyncio.sleep(0.05)
    assert progress[-1]["state"] == "done" and progress[0]["state"] == "running", progress
    status, kind, data, _ = await fetch(thuky.http, done["url"])
    assert status == 200 and kind == "application/zip"
    assert hashlib.sha256(data).hexdigest() == done["sha256"]
    archive = tmp_path / "meeting.zip"
    archive.write_bytes(data)

    # What it holds.
    with zipfile.ZipFile(archive) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        kinds = sorted(mm["kind"] for mm in manifest["members"])
        assert kinds == ["annotated", "audit", "chat", "document", "minutes", "minutes_signed",
                         "recording", "recording", "timeline"], kinds
        said = json.loads(zf.read("chat/messages.json"))["messages"]  # the whole record
        assert [(c["to"], c["text"], c["hidden"]) for c in said] == [
            ("all", "Tôi đồng ý", True), ("chair", "Ý kiến riêng", False)], said
        base = f"documents/{doc['id']}-v1"
        shared = pymupdf.open("pdf", zf.read(f"{base}/annotated.pdf"))
        assert [len(list(shared[i].annots())) for i in range(shared.page_count)] == [1, 0]  # no private ink
        about = next(mm for mm in manifest["members"] if mm["kind"] == "document")["about"]
        assert about["presented"] is True and about["version"] == 1
        chain = json.loads(zf.read("audit/chain.json"))
        assert {"minutes_generated", "minutes_signed"} <= {e["kind"] for e in chain["entries"]}
    async with h.server.app[keys.DB].session() as s:
        exported = (await s.exec(select(AuditEntry).where(
            AuditEntry.meeting_id == m, AuditEntry.kind == "archive_exported"))).one()
    assert json.loads(exported.data_json)["sha256"] == done["sha256"]

    result = verify(archive, "--ca", str(tmp_path / "trust.pem"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "archive verifies" in result.stdout and "trusted" in result.stdout

    # Altered: a document's byte (manifest untouched), the signed minutes replaced with the
    # manifest recomputed, an audit entry edited with the manifest recomputed, not a ZIP.
    with zipfile.ZipFile(archive) as zf:
        pdf = zf.read(f"{base}/document.pdf")
        signed = zf.read("minutes/minutes-v1-signed.pdf")
        chain_bytes = zf.read("audit/chain.json")
    forged = signed.replace(b"/Type", b"/Type ", 1)
    chain["entries"][0]["data"]["forged"] = True
    cases = [
        ({f"{base}/document.pdf": pdf[:-10] + b"0" + pdf[-9:]}, False,
         "document.pdf: SHA-256 does not match the manifest"),
        ({"minutes/minutes-v1-signed.pdf": forged}, True,
         "not the minutes the audit chain recorded"),
        ({"audit/chain.json": json.dumps(chain).encode()}, True,
         "entry 1 was changed after it was written"),
    ]
    assert chain_bytes != json.dumps(chain).encode()
    for i, (change, fix, message) in enumerate(cases):  # the command's code, in this process
        altered = tmp_path / f"altered-{i}.zip"
        rewrite(archive, altered, change, fix)
        report = await asyncio.to_thread(archive_check.verify, altered)
        assert not report.ok and any(message in p for p in report.problems), (i, report)
        if i == 1:  # the replaced signed minutes also fail their own signature check
            assert any("does not verify: the file was changed" in p
                       for p in report.problems), report
    garbage = tmp_path / "garbage.zip"
    garbage.write_bytes(b"PK" + bytes(100))
    with pytest.raises(archive_check.Unreadable, match="not a readable ZIP"):
        archive_check.verify(garbage)
    await reader.close()
    await close_all(people)


async def test_the_meeting_screen_links_the_archive_for_those_who_may_make_it(
        hopso: Harness) -> None:
    """The chair and the secretary (`manage`, what the archive page takes) see the link, in
    Vietnamese or English; a delegate neither sees it nor gets the page."""
    h = hopso
    m = await demo_meeting_id(h)
    link = f'href="/meetings/{m}/archive"'
    html = {"Accept": "text/html"}
    for name in ("chutri", "thuky"):
        user = await h.login(name)
        status, page = await user.call("GET", f"/meetings/{m}", headers=html)
        assert status == 200 and link in page and "Hồ sơ lưu trữ cuộc họp" in page, name
        status, page = await user.call("GET", f"/meetings/{m}?lang=en", headers=html)
        assert status == 200 and link in page and ">Meeting archive<" in page, name
        assert (await user.call("GET", f"/meetings/{m}/archive", headers=html))[0] == 200
    delegate = await h.login("daibieu")
    status, page = await delegate.call("GET", f"/meetings/{m}", headers=html)
    assert status == 200 and link not in page and "Hồ sơ lưu trữ cuộc họp" not in page
    assert (await delegate.call("GET", f"/meetings/{m}/archive", headers=html))[0] == 403


async def test_archive_file_names_and_jobs_refuse_hostile_input(hopso: Harness) -> None:
    h = hopso
    m, people = await open_demo(h, "thuky")
    thuky = people["thuky"]
    for name in ("..%2F..%2Fhopso.sqlite3", ".work-x.zip", "a.txt", "x" * 200 + ".zip"):
        status, body = await thuky.http.call("GET", f"/api/meetings/{m}/archives/{name}")
        assert status in (400, 404) and "error" in body, (name, status, body)
    status, body = await thuky.http.call("GET", "/api/archive/jobs/nope")
    assert status == 404 and body["error"]["code"] == "not_found"
    status, body = await thuky.http.call("POST", f"/api/meetings/{m}/composite",
                                         {"recording_id": "1"})
    assert status == 400 and body["error"]["code"] == "invalid", body
    status, job = await thuky.http.call("POST", f"/api/meetings/{m}/composite")
    assert status == 202
    failed = await wait_job(thuky.http, job)
    assert failed["state"] == "failed" and "no finished recording" in failed["message"]
    status, body = await thuky.http.call("GET", f"/api/meetings/{m}/archives")
    assert status == 200 and body["files"] == []
    await close_all(people)


async def test_an_archive_that_cannot_fit_fails_clearly_and_leaves_nothing(
        hopso: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
        ) -> None:
    from server.archive import service
    monkeypatch.setattr(service, "SPARE_BYTES", 2**60)  # more than any disk has free
    h = hopso
    m, people = await open_demo(h, "thuky")
    status, job = await people["thuky"].http.call("POST", f"/api/meetings/{m}/archive")
    assert status == 202
    failed = await wait_job(people["thuky"].http, job)
    assert failed["state"] == "failed" and failed["file"] is None, failed
    assert failed["message"].startswith("not enough disk space for the archive: it needs about")
    assert any("archive of meeting" in r.getMessage() and "not enough disk space"
               in r.getMessage() for r in caplog.records)
    folder = h.settings.data_dir / "archives" / str(m)
    assert list(folder.iterdir()) == []  # no archive, no .partial, no work folder
    await close_all(people)
