"""Backup, verify, restore and migrate, each refusing with one line (BackupRefused) and
changing nothing when it refuses."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from rooms.ballot_seal import BallotKey, BallotKeyError
from server.backup import database
from server.backup.archive import (
    POSTGRES_MEMBER,
    SQLITE_MEMBER,
    ArchiveWriter,
    BackupRefused,
    Header,
    read_archive,
)
from server.core.data_lock import LOCK_NAME, DataDirBusy, hold_data_dir
from server.core.migrate import SchemaTooNew, check_known
from server.core.settings import Settings

# The document store (server/documents/runtime.py: BlobStore(data_dir / "documents")): the
# blobs and what was derived from them; its tmp/ holds only uploads in flight.
DOCUMENTS = "documents"
STORE_PARTS = ("blobs", "derived")
# The chair's recordings (server/recording/live.py: <data dir>/recordings/<meeting>/<start>/),
# which the database's recording rows name; left out with --no-recordings.
RECORDINGS = "recordings"
# What a fresh data directory may already hold: the lock (taken by the restore itself) and
# the ballot key the operator kept apart from the backups (docs/backup.md).
_MAY_HOLD = {LOCK_NAME, "ballot.key", "lost+found"}


@dataclass(frozen=True)
class Summary:
    header: Header
    files: int
    bytes: int


def _release() -> str:
    try:
        return metadata.version("hopso")
    except metadata.PackageNotFoundError:
        return "unknown"


def _ballot_key_id(settings: Settings) -> str | None:
    path = settings.ballot_key_path
    if not path.is_file():
        return None
    try:
        return BallotKey.load_or_create(path).key_id  # the file exists: only read
    except BallotKeyError as exc:
        raise BackupRefused(str(exc)) from None


def backup(settings: Settings, out: Path, *, recordings: bool = True) -> Summary:
    """The database first (one consistent moment), then the document store: blobs are
    written before any row names them and never change, so every blob the copy names is
    there (documents uploaded meanwhile add blobs the copy does not name: harmless). Then
    the recordings: a finished one whole, one still being written as far as it was when
    its file was opened."""
    out = out.resolve()
    if out.exists():
        raise BackupRefused(f"{out} already exists: refused, nothing overwritten")
    if not out.parent.is_dir():
        raise BackupRefused(f"no directory {out.parent} to write the backup in")
    if not settings.data_dir.is_dir():  # with PostgreSQL it still holds the documents
        raise BackupRefused(f"no data directory {settings.data_dir} (--data-dir, "
                            f"HOPSO_DATA_DIR): refused")
    work = Path(tempfile.mkdtemp(prefix=".hopso-backup-", dir=out.parent))
    try:
        path = database.sqlite_path(settings)
        if path is not None:
            db_file, member = work / "hopso.sqlite3", SQLITE_MEMBER
            identity = database.snapshot_sqlite(path, db_file)
        else:
            db_file, member = work / "postgresql.dump", POSTGRES_MEMBER
            identity = database.dump_postgres(settings, db_file)
        header = Header(installation_id=identity.installation_id,
                        database="sqlite" if path is not None else "postgresql",
                        schema=identity.schema, created_at=datetime.now(UTC).isoformat(),
                        release=_release(), ballot_key_id=_ballot_key_id(settings))
        writer = ArchiveWriter(out, header)
        try:
            writer.add_file(member, db_file)
            db_file.unlink()
            for name, file in _store_files(settings.data_dir / DOCUMENTS):
                try:
                    writer.add_file(name, file)
                except FileNotFoundError:  # derived files a re-render replaced meanwhile
                    continue
            if recordings:
                for name, file in _files(settings.data_dir, RECORDINGS):
                    try:
                        writer.add_file(name, file)
                    except FileNotFoundError:  # deleted by retention meanwhile
                        continue
            writer.finish()
        except BaseException:
            writer.abort()
            raise
        return Summary(header, len(writer.files), sum(s for _, s in writer.files.values()))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _store_files(root: Path) -> Iterator[tuple[str, Path]]:
    for part in STORE_PARTS:
        for name, file in _files(root, part):
            yield f"{DOCUMENTS}/{name}", file


def _files(root: Path, part: str) -> Iterator[tuple[str, Path]]:
    """Regular files under root/part (followed if it is a link to another disk), as
    part/relative names."""
    base = root / part
    for directory, dirs, files in os.walk(base):
        dirs.sort()
        for name in sorted(files):
            file = Path(directory) / name
            if file.is_file() and not file.is_symlink():
                yield f"{part}/{file.relative_to(base).as_posix()}", file


def verify(path: Path) -> Summary:
    header, files = read_archive(path)
    return Summary(header, len(files), sum(int(s) for _, s in files.values()))


def restore(settings: Settings, path: Path) -> Summary:
    """Onto a fresh data directory (and, for PostgreSQL, an empty database): the target is
    checked, then the whole backup, and only then is anything written; a failure midway
    removes what the restore wrote."""
    data_dir = settings.data_dir
    try:
        lock = hold_data_dir(data_dir)  # no server may start on it meanwhile
    except DataDirBusy as exc:
        raise BackupRefused(str(exc)) from None
    try:
        header, files = read_archive(path, on_header=lambda h: _check_target(settings, h))
        _write(settings, path, files)
        return Summary(header, len(files), sum(int(s) for _, s in files.values()))
    finally:
        lock.close()


def _check_target(settings: Settings, header: Header) -> None:
    data_dir = settings.data_dir
    sqlite = database.sqlite_path(settings)
    kind = "sqlite" if sqlite is not None else "postgresql"
    if header.database != kind:
        raise BackupRefused(f"this backup holds a {header.database} database and the target "
                            f"is {kind} (--database-url): refused, nothing restored")
    try:
        check_known(header.schema)
    except SchemaTooNew:
        raise BackupRefused(f"the backup's schema ({', '.join(header.schema)}) is newer than "
                            f"this release knows: restore it with the release that made it "
                            f"({header.release}); nothing restored") from None
    if sqlite is not None and sqlite.exists():
        found = database.existing_sqlite(sqlite)
        if found is not None:
            which = ("this installation already" if found == header.installation_id else
                     f"installation {found}, the backup is of {header.installation_id}")
            raise BackupRefused(f"{sqlite} holds {which}: restore needs a fresh data "
                                f"directory; refused, nothing overwritten")
    if sqlite is None:
        existing = database.postgres_identity(settings)
        if existing is not None:
            other = ("another installation, " + existing.installation_id
                     if existing.installation_id != header.installation_id
                     else "this installation")
            raise BackupRefused(f"the PostgreSQL database is not empty (it holds {other}): "
                                f"restore into an empty database; nothing overwritten")
    extra = sorted(p.name for p in data_dir.iterdir() if p.name not in _MAY_HOLD)
    if sqlite is not None and sqlite.exists() and sqlite.parent != data_dir:
        extra.append(str(sqlite))
    if extra:
        raise BackupRefused(f"data directory {data_dir} is not empty ({', '.join(extra[:3])}"
                            f"{', ...' if len(extra) > 3 else ''}): restore needs a fresh "
                            f"one; nothing overwritten")
    if settings.ballot_key_path.is_file() and header.ballot_key_id is not None:
        key_id = _ballot_key_id(settings)
        if key_id != header.ballot_key_id:
            raise BackupRefused(f"the ballot key {settings.ballot_key_path} is another "
                                f"installation's (key {key_id}, the backup's {header.ballot_key_id})"
                                f": refused, nothing restored")


def _write(settings: Settings, path: Path, files: dict[str, list[object]]) -> None:
    data_dir = settings.data_dir
    sqlite = database.sqlite_path(settings)
    work = Path(tempfile.mkdtemp(prefix=".restore-", dir=data_dir))
    made: list[Path] = [work, data_dir / DOCUMENTS, data_dir / RECORDINGS]

    def sink(name: str, chunks: Iterator[bytes]) -> None:
        # A failed read of the backup file raises from `chunks` as it is (the backup's
        # fault); a failed write (a full disk) says it is the target's.
        target = data_dir / name
        try:
            if name.startswith((DOCUMENTS + "/", RECORDINGS + "/")):
                target.parent.mkdir(parents=True, exist_ok=True)
            else:
                target = work / Path(name).name
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except OSError as exc:
            raise _write_failed(target, exc) from None
        try:  # unbuffered: a full disk is told by the write that meets it, not at close
            for chunk in chunks:
                view = memoryview(chunk)
                while view:
                    try:
                        view = view[os.write(fd, view):]
                    except OSError as exc:
                        raise _write_failed(target, exc) from None
            try:
                os.fsync(fd)
            except OSError as exc:
                raise _write_failed(target, exc) from None
        finally:
            os.close(fd)
        if name.startswith(f"{DOCUMENTS}/blobs/"):
            os.chmod(target, 0o444)  # blobs are immutable (documents/storage.py)

    try:
        read_archive(path, expected=files, sink=sink)  # re-checked as it is written
        if sqlite is not None:
            sqlite.parent.mkdir(parents=True, exist_ok=True)
            made.append(sqlite)
            os.link(work / "hopso.sqlite3", sqlite)  # fails rather than overwrite
        else:
            database.restore_postgres(settings, work / "postgresql.dump")
    except BaseException:
        for p in made:
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _write_failed(target: Path, exc: OSError) -> BackupRefused:
    return BackupRefused(f"restore could not write {target} ({exc.strerror or exc}): what it "
                         f"wrote is removed, the backup file is not at fault")


def migrate(settings: Settings) -> list[str]:
    """Bring the schema to this release's heads with the data directory held exclusively
    (stop the servers first); refuses a schema newer than the code."""
    from rooms.db import Database
    from server.core.migrate import upgrade

    sqlite = database.sqlite_path(settings)
    if sqlite is not None and not sqlite.is_file():  # a forgotten HOPSO_DATABASE_URL
        raise BackupRefused(f"no database at {sqlite}: migrate upgrades an existing one "
                            f"(PostgreSQL: give --database-url or HOPSO_DATABASE_URL); "
                            f"nothing made")
    try:
        lock = hold_data_dir(settings.data_dir)
    except DataDirBusy as exc:
        raise BackupRefused(str(exc)) from None
    try:
        db = Database(settings.sqlalchemy_url)

        async def run() -> list[str]:
            try:
                await upgrade(db)
                async with db.engine.connect() as conn:
                    from sqlalchemy import text
                    rows = await conn.execute(text("SELECT version_num FROM alembic_version"))
                    return sorted(str(r[0]) for r in rows)
            finally:
                await db.close()
        try:
            return asyncio.run(run())
        except SchemaTooNew as exc:
            raise BackupRefused(str(exc)) from None
    finally:
        lock.close()
