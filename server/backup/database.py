"""The database's part of a backup: a consistent copy while the server writes, and back.

SQLite: the online backup API copies every page in one read transaction (WAL lets the
server go on writing meanwhile), so the copy is the database as of one commit. Only
current pages are copied, never the WAL's older frames: the copy holds what the live file
holds after a checkpoint, and nothing of the order secret ballots were cast in (their
erased cells and freed pages are zeroed by `secure_delete`; docs/security.md).
PostgreSQL: `pg_dump --format=custom` (one repeatable-read snapshot) and `pg_restore
--single-transaction` into an empty database; the dump holds rows, not row versions or
transaction ids.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from server.backup.archive import BackupRefused
from server.core.settings import Settings


@dataclass(frozen=True)
class Identity:
    installation_id: str
    schema: list[str]


def sqlite_path(settings: Settings) -> Path | None:
    url = settings.sqlalchemy_url
    return Path(url.split(":///", 1)[1]) if url.startswith("sqlite") else None


def snapshot_sqlite(source: Path, target: Path) -> Identity:
    if not source.is_file():
        raise BackupRefused(f"no database at {source}")
    src = sqlite3.connect(source, timeout=30)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)  # all pages in one step: one read transaction, one commit's state
    finally:
        dst.close()
        src.close()
    return sqlite_identity(target)


def sqlite_identity(path: Path) -> Identity:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)  # with its WAL's commits
    try:
        if conn.execute("PRAGMA quick_check").fetchone()[0] != "ok":
            raise BackupRefused(f"the database copy {path} fails SQLite's check: refused")
        return _identity([tuple(r) for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")], conn.execute)
    except sqlite3.DatabaseError as exc:
        raise BackupRefused(f"cannot read the database {path}: {exc}") from None
    finally:
        conn.close()


def _identity(tables: list[tuple[Any, ...]], run: Any) -> Identity:
    names = {t[0] for t in tables}
    if "installation" not in names:
        raise BackupRefused("the database has no installation id (schema older than this "
                            "release: start this release once, which migrates it, or run "
                            "`python -m server.backup migrate`)")
    installation = run("SELECT installation_id FROM installation WHERE id = 1").fetchone()
    if installation is None:  # a table made without its migration (create_all)
        raise BackupRefused("the database's installation table is empty: refused")
    schema = sorted(r[0] for r in run("SELECT version_num FROM alembic_version").fetchall())
    return Identity(str(installation[0]), schema)


def existing_sqlite(path: Path) -> str | None:
    """The installation a SQLite file holds, if it says (for a clearer refusal)."""
    try:
        return sqlite_identity(path).installation_id
    except BackupRefused:
        return None


# --- PostgreSQL ---------------------------------------------------------------------------

def _libpq(settings: Settings) -> tuple[str, dict[str, str]]:
    """The URL for pg_dump/pg_restore/asyncpg, with the password in the environment (a
    command line is readable by every user of the machine)."""
    url = make_url(settings.database_url or "").set(drivername="postgresql")
    env = {**os.environ}
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    return url.set(password=None).render_as_string(hide_password=False), env


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BackupRefused(f"{name} is not installed (Debian: apt-get install "
                            f"postgresql-client): refused")
    return found


def _run(args: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(args, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        first = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[0]
        raise BackupRefused(f"{Path(args[0]).name} failed: {first}")


async def _pg_identity(dsn: str, env: dict[str, str]) -> Identity | None:
    """None for an empty database; raises if it holds tables but no installation."""
    import asyncpg

    conn = await asyncpg.connect(dsn, password=env.get("PGPASSWORD"))
    try:
        tables = await conn.fetch("SELECT table_name FROM information_schema.tables WHERE "
                                  "table_schema NOT IN ('pg_catalog', 'information_schema')")
        if not tables:
            return None
        names = {t[0] for t in tables}
        if "installation" not in names:
            raise BackupRefused("the database has no installation id (see `python -m "
                                "server.backup migrate`)")
        installation = await conn.fetchval("SELECT installation_id FROM installation "
                                           "WHERE id = 1")
        if installation is None:
            raise BackupRefused("the database's installation table is empty: refused")
        schema = sorted(r[0] for r in await conn.fetch("SELECT version_num FROM "
                                                       "alembic_version"))
        return Identity(str(installation), schema)
    finally:
        await conn.close()


def postgres_identity(settings: Settings) -> Identity | None:
    dsn, env = _libpq(settings)
    try:
        return asyncio.run(_pg_identity(dsn, env))
    except BackupRefused:
        raise
    except Exception as exc:  # noqa: BLE001 - unreachable, refused login...: one line
        raise BackupRefused(f"cannot read the PostgreSQL database: {type(exc).__name__}: "
                            f"{exc}".splitlines()[0]) from None


def dump_postgres(settings: Settings, target: Path) -> Identity:
    identity = postgres_identity(settings)
    if identity is None:
        raise BackupRefused("the PostgreSQL database is empty: nothing to back up")
    dsn, env = _libpq(settings)
    _run([_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges",
          f"--file={target}", f"--dbname={dsn}"], env)
    return identity


def restore_postgres(settings: Settings, dump: Path) -> None:
    """Into an empty database, all or nothing (one transaction)."""
    dsn, env = _libpq(settings)
    _run([_tool("pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error",
          "--single-transaction", f"--dbname={dsn}", str(dump)], env)
