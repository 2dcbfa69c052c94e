"""Upgrades that keep data: a database filled at the oldest revision (0001, the first
release's schema) is migrated to every head by the server's own start, on SQLite and
PostgreSQL, and served; a schema newer than the code and a data directory another process
holds are refused with one line."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import urllib.request
from pathlib import Path

import aiohttp
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text

from rooms.db import Database
from server.core.migrate import alembic_config
from server.core.passwords import password_hasher
from server.core.settings import Settings
from testkit.processes import python_m, run_py, start_server
from tests.conftest import migrated_sqlite, need_service
from tests.server.core.test_migrate import upgrade_to

PASSWORD = "mat-khau-cu-2026"
UNITS = [(1, "Tỉnh Quảng Bình", "province", None), (2, "Thành phố Đồng Hới", "city", 1),
         (3, "Phường Đồng Phú", "ward", 2)]
USERS = [(1, "quantri", "Quản trị viên", "admin", 1), (2, "chutri", "Nguyễn Văn Hùng", "chair", 2),
         (3, "daibieu", "Lê Minh Tuấn", "delegate", 3)]
MEETINGS = [(1, "Họp giao ban tháng 11", "scheduled"), (2, "Kỳ họp HĐND lần thứ 5", "closed")]


async def fill_0001(db: Database) -> None:
    """Rows as the first release wrote them, in SQL valid for revision 0001 only."""
    hashed = password_hasher(fast=True).hash(PASSWORD)
    async with db.session() as s:
        for uid, name, kind, parent in UNITS:
            await s.exec(text(  # type: ignore[call-overload]
                "INSERT INTO unit (id, name, kind, parent_id, active, created_at) "
                "VALUES (:i, :n, :k, :p, true, CURRENT_TIMESTAMP)").bindparams(
                    i=uid, n=name, k=kind, p=parent))
        await s.exec(text("INSERT INTO site (id, name, unit_id, active) "  # type: ignore[call-overload]
                          "VALUES (1, 'Phòng họp trực tuyến Đồng Phú', 3, true)"))
        for uid, username, full_name, role, unit in USERS:
            await s.exec(text(  # type: ignore[call-overload]
                'INSERT INTO "user" (id, username, full_name, password_hash, role, unit_id, '
                "disabled, created_at) VALUES (:i, :u, :f, :h, :r, :unit, false, "
                "CURRENT_TIMESTAMP)").bindparams(i=uid, u=username, f=full_name, h=hashed,
                                                 r=role, unit=unit))
        for mid, title, status in MEETINGS:
            await s.exec(text(  # type: ignore[call-overload]
                "INSERT INTO meeting (id, title, description, unit_id, status, starts_at, "
                "created_by, created_at) VALUES (:i, :t, 'Nội dung', 2, :s, "
                "CURRENT_TIMESTAMP, 2, CURRENT_TIMESTAMP)").bindparams(i=mid, t=title, s=status))
            for uid, role in ((2, "chair"), (3, "delegate")):
                await s.exec(text(  # type: ignore[call-overload]
                    "INSERT INTO meetingmember (meeting_id, user_id, role) "
                    "VALUES (:m, :u, :r)").bindparams(m=mid, u=uid, r=role))
        if not db.is_sqlite:  # the rows above chose their ids: move the sequences past them
            for table in ("unit", "site", "user", "meeting", "meetingmember"):
                await s.exec(text(  # type: ignore[call-overload]
                    f"SELECT setval(pg_get_serial_sequence('\"{table}\"', 'id'), "
                    f"(SELECT max(id) FROM \"{table}\"))"))


async def login(session: aiohttp.ClientSession, base: str, username: str) -> str:
    async with session.post(base + "/api/login", json={"username": username,
                                                       "password": PASSWORD}) as r:
        body = await r.json()
        assert r.status == 200, body
        return str(body["csrf_token"])


async def test_a_database_filled_at_the_first_revision_upgrades_and_is_served(
        tmp_path: Path, empty_database_url: str | None) -> None:
    settings = Settings(data_dir=tmp_path / "data", database_url=empty_database_url)
    settings.data_dir.mkdir()
    db = Database(settings.sqlalchemy_url)
    try:
        await upgrade_to(db, "0001")
        await fill_0001(db)
    finally:
        await db.close()
    env = {"HOPSO_DATABASE_URL": empty_database_url} if empty_database_url else {}
    server = await asyncio.to_thread(  # migrates to every head as it starts (run.main)
        start_server, "--data-dir", str(settings.data_dir), env=env, preimported=True)
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
            await login(s, server.base, "chutri")
            async with s.get(server.base + "/api/meetings") as r:
                assert r.status == 200
                listed = str(await r.json())
            for _, title, _ in MEETINGS:
                assert title in listed, listed
            async with s.get(server.base + "/api/meetings/1/members") as r:
                members = str(await r.json())
                assert r.status == 200 and "Lê Minh Tuấn" in members, members
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
            await login(s, server.base, "quantri")
            async with s.get(server.base + "/api/units") as r:
                units = str(await r.json())
            assert all(name in units for _, name, _, _ in UNITS), units
    finally:
        server.stop()
    assert not [line for line in server.output if "First start" in line]  # admin was there
    db = Database(settings.sqlalchemy_url)
    try:
        async with db.session() as s:
            heads = set((await s.exec(text(  # type: ignore[call-overload]
                "SELECT version_num FROM alembic_version"))).scalars().all())
            scripts = ScriptDirectory.from_config(alembic_config(db.url))
            assert heads == set(scripts.get_heads())
            rows = (await s.exec(text(  # type: ignore[call-overload]
                "SELECT id, name, kind, parent_id FROM unit ORDER BY id"))).all()
            assert [tuple(r) for r in rows] == UNITS
            users = (await s.exec(text(  # type: ignore[call-overload]
                'SELECT id, username, full_name, role, unit_id FROM "user" ORDER BY id'))).all()
            assert [tuple(r) for r in users] == USERS
            meetings = (await s.exec(text(  # type: ignore[call-overload]
                "SELECT id, title, status FROM meeting ORDER BY id"))).all()
            assert [tuple(r) for r in meetings] == MEETINGS
            assert len((await s.exec(text(  # type: ignore[call-overload]
                "SELECT installation_id FROM installation"))).all()) == 1
    finally:
        await db.close()


def one_line(done: subprocess.CompletedProcess[str], prefix: str, *words: str) -> None:
    line = done.stderr.strip()
    assert done.returncode == 1, (done.returncode, done.stderr)
    assert len(line.splitlines()) == 1 and line.startswith(prefix), line
    for word in words:
        assert word in line, line


def migrate_cli(data_dir: Path, database_url: str | None = None
                ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOPSO_")}
    if database_url:
        env["HOPSO_DATABASE_URL"] = database_url
    return python_m("server.backup", "migrate", "--data-dir", str(data_dir), env=env)


async def test_a_schema_newer_than_the_code_is_refused(
        tmp_path: Path, database_url: str | None) -> None:
    data = tmp_path / "data"
    data.mkdir()
    settings = Settings(data_dir=data, database_url=database_url)
    if database_url is None:
        shutil.copyfile(migrated_sqlite(), data / "hopso.sqlite3")
    db = Database(settings.sqlalchemy_url)

    async def revisions() -> list[str]:
        async with db.session() as s:
            return sorted((await s.exec(text(  # type: ignore[call-overload]
                "SELECT version_num FROM alembic_version"))).scalars().all())
    try:
        async with db.session() as s:  # as a newer release leaves it
            await s.exec(text("INSERT INTO alembic_version "  # type: ignore[call-overload]
                              "VALUES ('0099_from_a_newer_release')"))
        before = await revisions()
        env = {"HOPSO_DATABASE_URL": database_url} if database_url else {}
        one_line(await asyncio.to_thread(run_py, "--data-dir", str(data), env=env),
                 "hopso: cannot start:", "0099_from_a_newer_release", "newer release")
        one_line(await asyncio.to_thread(migrate_cli, data, database_url), "backup: ",
                 "0099_from_a_newer_release", "newer release")
        assert await revisions() == before
    finally:
        await db.close()


def test_a_data_directory_another_process_holds_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = start_server("--data-dir", str(data), preimported=True)
    try:
        one_line(run_py("--data-dir", str(data)), "hopso: cannot start:", "in use",
                 f"pid {first.process.pid}")
        one_line(migrate_cli(data), "backup: ", "in use")
        with urllib.request.urlopen(first.base + "/healthz", timeout=5) as r:
            assert r.status == 200  # the first one is untouched
    finally:
        first.stop()
    again = start_server("--data-dir", str(data), preimported=True)  # the lock went with it
    again.stop()
    done = migrate_cli(data)
    assert done.returncode == 0 and "schema is at" in done.stdout, done.stderr


@pytest.mark.postgres
def test_processes_of_one_postgresql_deployment_share_a_data_directory(
        tmp_path: Path, migrated_postgres_url: str) -> None:
    need_service("PostgreSQL", 5432)
    data = tmp_path / "data"
    env = {"HOPSO_DATABASE_URL": migrated_postgres_url}
    first = start_server("--data-dir", str(data), env=env, preimported=True)
    try:
        second = start_server("--data-dir", str(data), env=env, preimported=True)
        second.stop()
        # ...but a SQLite server (another installation) cannot take their directory.
        one_line(run_py("--data-dir", str(data)), "hopso: cannot start:", "in use")
    finally:
        first.stop()


def test_migrate_without_a_database_makes_none(tmp_path: Path) -> None:
    """A PostgreSQL site whose upgrade forgot HOPSO_DATABASE_URL (docs/backup.md's step 4 run
    with hopso.env only): migrate used to make a new SQLite installation in the data
    directory and print its revisions as if the upgrade had run; the real database stayed
    at the old schema. Refused in one line, nothing made."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "documents").mkdir()  # a scale-out site's data directory: documents only
    one_line(migrate_cli(data), "backup: ", "no database at", "HOPSO_DATABASE_URL")
    assert [p.name for p in data.iterdir()] == ["documents"]
    one_line(migrate_cli(tmp_path / "missing"), "backup: ", "no database at")
    assert not (tmp_path / "missing").exists()
