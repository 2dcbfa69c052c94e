"""`python -m server.backup` on a server in use: a backup taken while annotations are being
written restores, on a fresh data directory, every record acknowledged before it started,
every document byte, ballot count, minute and the audit chain; secret ballots stay as
unlinkable in the backup as in the live files."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import shutil
import subprocess
import tarfile
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
import socketio
from sqlalchemy import text

from rooms.db import Database
from server.core import keys
from server.core.settings import Settings
from testkit.processes import python_m
from tests.conftest import Harness, _test_database, start_harness
from tests.server import ballot_linkage
from tests.server.documents_support import (
    Listener,
    fetch,
    ink_op,
    make_pdf,
    subscribed_viewers,
    upload_ready,
)
from tests.server.procedure.test_secret import add_voters
from tests.server.procedure_helpers import add_item, close_all, join, open_demo
from tests.server.sqlite_file import DatabaseFiles

OPTIONS = ["Ông A", "Bà B", "Ông C", "Bà D"]
VOTERS = 12
# Written by the load while the backup runs; compared as "acknowledged before the backup
# started must be there, and what is there is the original's", not row for row.
LOADED = {"annotationop"}
# Sessions are the logins of the test's clients (touched by each request), not the record.
NOT_RECORD = {"authsession"}


def backup_cli(*args: str, database_url: str | None = None
               ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOPSO_")}
    if database_url:
        env["HOPSO_DATABASE_URL"] = database_url
    return python_m("server.backup", *args, env=env)


async def tables(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, sorted: what the database records."""
    async with db.engine.connect() as conn:
        if db.is_sqlite:
            names = (await conn.execute(text(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite_%'"))).scalars().all()
        else:
            names = (await conn.execute(text(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'public'"))).scalars().all()
        out = {}
        for name in names:
            rows = (await conn.execute(text(f'SELECT * FROM "{name}"'))).all()
            out[name] = sorted((tuple(r) for r in rows), key=repr)
        return out


def store_files(data_dir: Path) -> dict[str, str]:
    root = data_dir / "documents"
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for part in ("blobs", "derived") for p in sorted((root / part).rglob("*"))
            if p.is_file()}


def audit_report(data_dir: Path, database_url: str | None) -> list[dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOPSO_")}
    args = ["--json", "--data-dir", str(data_dir)]
    if database_url:
        args += ["--database-url", database_url]
    done = python_m("server.admin.audit_verify", *args, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout))


class Load:
    """A delegate writing annotation ops one after another, each awaited to its ack."""

    def __init__(self, writer: Listener, doc: dict[str, Any]) -> None:
        self.writer, self.doc = writer, doc
        self.acked: list[tuple[float, str]] = []  # (monotonic time of the ack, op id)
        self.running = True
        self.unanswered = 0

    async def run(self) -> None:
        n = 0
        while self.running:
            op = ink_op(page=n % 2, visibility="meeting" if n % 3 else "private",
                        points=[[10.0 + n, 20.0], [30.0, 40.0 + n], [50.5, 60.25]])
            try:
                ack = await self.writer.call("annotation:op", {
                    "document_id": self.doc["id"], "version": self.doc["version"], "op": op})
            except socketio.exceptions.TimeoutError:  # a loaded machine: not acknowledged,
                self.unanswered += 1  # so the backup owes it nothing either way
                continue
            finally:
                n += 1
            await asyncio.sleep(0.03)  # a pen's pace, within the socket budget (50/s)
            if not ack["ok"] and ack["error"]["code"] == "rate_limited":
                self.unanswered += 1
                continue
            assert ack["ok"], ack
            self.acked.append((time.monotonic(), op["op_id"]))


async def fill(h: Harness, tmp_path: Path) -> dict[str, Any]:
    """A meeting's record: documents with annotations, a closed and an open secret vote,
    an open vote, minutes; the audit chain grows with each."""
    m, people = await open_demo(h, "thuky", "daibieu", "daibieu2")
    chair, thuky = people["chutri"], people["thuky"]
    item = await add_item(thuky, m, "Bầu Ban kiểm tra")
    docs = [await upload_ready(h, m, make_pdf(tmp_path, pages=2, name=f"t{n}.pdf"))
            for n in range(2)]
    viewers = await subscribed_viewers(h, m, docs[0]["id"], "daibieu", "daibieu2")
    for n, viewer in enumerate(viewers):
        for doc in docs:
            for visibility in ("private", "meeting"):
                ack = await viewer.call("annotation:op", {
                    "document_id": doc["id"], "version": doc["version"],
                    "op": ink_op(page=n, visibility=visibility)})
                assert ack["ok"], ack
    voters = await add_voters(h, thuky, m, VOTERS)
    rnd = random.Random(18)
    truth: dict[int, dict[int, int]] = {}
    votes = []
    for close in (True, False):
        vote = await chair.ok("vote:open", {
            "meeting_id": m, "agenda_item_id": item["id"], "question": "Bầu Trưởng ban",
            "secret": True, "options": OPTIONS})
        truth[vote["id"]] = {}
        for user in rnd.sample(list(voters), VOTERS):
            truth[vote["id"]][user] = rnd.randrange(len(OPTIONS))
            await voters[user].ok("vote:cast", {"meeting_id": m, "vote_id": vote["id"],
                                                "option": truth[vote["id"]][user], "seq": 1})
        if close:
            closed = await chair.ok("vote:close", {"meeting_id": m, "vote_id": vote["id"]})
            assert sum(closed["result"]["counts"]) == VOTERS
        votes.append(vote["id"])
    status, minutes = await thuky.http.call("POST", f"/api/meetings/{m}/minutes")
    assert status == 201, minutes
    await close_all(voters)  # type: ignore[arg-type]
    await close_all({k: v for k, v in people.items() if k != "daibieu"})
    return {"meeting": m, "docs": docs, "writer": viewers[0], "votes": votes, "truth": truth,
            "minutes": minutes, "chair": chair}


@pytest.mark.parametrize("harness_database_url", ["sqlite", pytest.param("postgres",
                                                                  marks=pytest.mark.postgres)],
                         indirect=True)
async def test_a_backup_under_load_restores_the_record_on_a_fresh_data_directory(
        tmp_path: Path, harness_database_url: str | None, postgres_to_drop: list[str]) -> None:
    h = await start_harness(tmp_path / "a", harness_database_url)
    restored: Harness | None = None
    try:
        record = await fill(h, tmp_path)
        m, closed_vote, open_vote = record["meeting"], *record["votes"]
        await asyncio.sleep(1.0)  # the scrub after the close (0.5 s) has run
        before = await tables(h.server.app[keys.DB])
        files_before = store_files(h.settings.data_dir)
        audit_before = audit_report(h.settings.data_dir, harness_database_url)

        load = Load(record["writer"], record["docs"][0])
        writing = asyncio.create_task(load.run())
        # Some ops acknowledged before the backup starts (a fixed 0.5 s saw none at load 20).
        deadline = time.monotonic() + 30
        while len(load.acked) < 3 and time.monotonic() < deadline and not writing.done():
            await asyncio.sleep(0.1)
        assert load.acked, f"no op acknowledged in 30 s ({load.unanswered} unanswered)"
        archive = tmp_path / "hopso.backup"
        started = time.monotonic()
        acked_before = {op for at, op in load.acked if at < started}
        done = await asyncio.to_thread(backup_cli, "backup", "--data-dir",
                                       str(h.settings.data_dir), "--out", str(archive),
                                       database_url=harness_database_url)
        ended = time.monotonic()
        load.running = False
        await writing
        assert done.returncode == 0, done.stderr
        during = [op for at, op in load.acked if started <= at <= ended]
        assert acked_before and during, "the load wrote before and while the backup ran"
        print(f"backup: {ended - started:.2f} s, {len(acked_before)} ops acked before it, "
              f"{len(during)} during it")

        # The backup file, as an attacker holding it reads it: secret ballots unlinkable.
        with tarfile.open(archive) as tar:
            names = tar.getnames()
            member = "database/hopso.sqlite3" if harness_database_url is None else \
                "database/postgresql.dump"
            extracted = tar.extractfile(member)
            assert extracted is not None
            database_bytes = extracted.read()
        assert not [n for n in names if "ballot.key" in n], "the ballot key stays out"
        if harness_database_url is None:
            copy = tmp_path / "copy.sqlite3"
            copy.write_bytes(database_bytes)
            files = DatabaseFiles.read(copy)
            assert files.wal == b""
            found = ballot_linkage.ballots(files.pages(), closed_vote, len(OPTIONS))
            assert len(found) == VOTERS
            for page in {b.page for b in found}:  # in the order of the random hashes
                cells = ballot_linkage.physical_order([b for b in found if b.page == page])
                assert [b.receipt for b in cells] == sorted(b.receipt for b in cells)
            assert ballot_linkage.ballots(files.pages(), open_vote, len(OPTIONS)) == []
            assert ballot_linkage.residue(files, [b.receipt.encode() for b in found]) == []
        else:
            dump = tmp_path / "copy.dump"
            dump.write_bytes(database_bytes)
            listing = subprocess.run(["pg_restore", "--data-only", "--table=voteballot",
                                      "--file=-", str(dump)],
                                     capture_output=True, check=True).stdout.decode()
            rows = [line.split("\t") for line in listing.splitlines()
                    if line.startswith(f"{closed_vote}\t")]
            assert len(rows) == VOTERS
            receipts = [next(c for c in r if ballot_linkage.HASH.fullmatch(c)) for r in rows]
            assert receipts == sorted(receipts), "ballots dumped in receipt order, not cast"

        # Restore on a fresh data directory (the ballot key kept apart, put back first).
        target = tmp_path / "b" / "data"
        target.mkdir(parents=True)
        shutil.copy2(h.settings.ballot_key_path, target / "ballot.key")
        async with AsyncExitStack() as stack:
            target_url = (await stack.enter_async_context(_test_database(postgres_to_drop))
                          if harness_database_url is not None else None)  # a new, empty database
        done = await asyncio.to_thread(backup_cli, "restore", str(archive), "--data-dir",
                                       str(target), database_url=target_url)
        assert done.returncode == 0, done.stderr
        assert store_files(target) == files_before  # every document byte
        if target_url is not None:  # once filled, the database takes no second restore
            again = tmp_path / "again"
            again.mkdir()
            done = await asyncio.to_thread(backup_cli, "restore", str(archive), "--data-dir",
                                           str(again), database_url=target_url)
            assert done.returncode == 1 and "not empty (it holds this installation)" in \
                done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
            assert sorted(p.name for p in again.iterdir()) == ["hopso.lock"]
        target_db = Database(Settings(data_dir=target, database_url=target_url).sqlalchemy_url)
        try:
            got = await tables(target_db)
            assert "installation" in got
            for name in set(before) | set(got):
                if name in LOADED | NOT_RECORD:
                    continue
                assert got.get(name) == before.get(name), f"table {name} differs"
            restored_ops, original_ops = await ops_of(target_db), await ops_of(h.server.app[keys.DB])
            assert acked_before <= set(restored_ops), "an op acknowledged before the backup is lost"
            assert {op: original_ops[op] for op in restored_ops} == restored_ops
            for log in {r[:3] for r in original_ops.values()}:  # a prefix of each page's log
                had = sorted(r[3] for r in original_ops.values() if r[:3] == log)
                kept = sorted(r[3] for r in restored_ops.values() if r[:3] == log)
                assert kept == had[:len(kept)], (log, kept, had)
        finally:
            await target_db.close()
        assert audit_report(target, target_url) == audit_before

        # A server on it serves the same record; the open secret vote closes with its key.
        restored = await start_harness(tmp_path / "b", target_url)
        thuky = await restored.login("thuky")
        old = await h.login("thuky")
        for doc in record["docs"]:
            for path in (f"/api/documents/{doc['id']}/pdf?version={doc['version']}",
                         f"/api/documents/{doc['id']}/pages/1?version={doc['version']}"):
                a, b = await fetch(old, path), await fetch(thuky, path)
                assert a[0] == b[0] == 200 and a[2] == b[2], path
        for path in (f"/api/meetings/{m}/minutes/1.pdf", f"/api/meetings/{m}/audit"):
            a, b = await fetch(old, path), await fetch(thuky, path)
            assert a[0] == b[0] == 200 and a[2] == b[2], path
        viewer = (await subscribed_viewers(restored, m, record["docs"][0]["id"], "daibieu"))[0]
        snap = await viewer.call("annotation:snapshot", {
            "document_id": record["docs"][0]["id"], "version": record["docs"][0]["version"]})
        assert snap["ok"], snap
        shown = {a["id"] for p in snap["result"]["pages"] for a in p["annotations"]}
        assert shown
        chair = await join(restored, "chutri", m)
        closed = await chair.ok("vote:close", {"meeting_id": m, "vote_id": open_vote})
        truth = record["truth"][open_vote]
        assert closed["result"]["counts"] == [list(truth.values()).count(o)
                                              for o in range(len(OPTIONS))]
        await close_all({"chutri": chair})
    finally:
        for harness in (h, restored):
            if harness is not None:
                await harness.close()
                await harness.server.close()



async def ops_of(db: Database) -> dict[str, tuple[Any, ...]]:
    """op id -> (document, version, page, seq, record) of every stored annotation op."""
    async with db.engine.connect() as conn:
        rows = (await conn.execute(text("SELECT op_id, document_id, version, page, seq, "
                                        "record FROM annotationop"))).all()
    return {r[0]: (r[1], r[2], r[3], r[4], repr(r[5])) for r in rows}
