"""Bad input to `python -m server.backup`: a truncated, damaged or lengthened backup, one
from another installation or of a newer schema, a restore into a non-empty data directory
or over an existing file: each refused with one line, nothing written or overwritten."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from documents.storage import BlobStore
from rooms.ballot_seal import BallotKey
from server.backup.archive import SQLITE_MEMBER, ArchiveWriter, Header
from server.core.settings import Settings
from tests.conftest import migrated_sqlite
from tests.server.test_backup import backup_cli


def refused(done: object, *words: str) -> str:
    """One line on stderr, exit status 1, saying the given words."""
    line = done.stderr.strip()  # type: ignore[attr-defined]
    assert done.returncode == 1, (done.returncode, line)  # type: ignore[attr-defined]
    assert len(line.splitlines()) == 1 and line.startswith("backup: "), line
    for word in words:
        assert word in line, line
    return line


def listing(directory: Path) -> dict[str, bytes]:
    """Every file's bytes (not SQLite's -shm/-wal, which any reader of the database makes)."""
    return {str(p.relative_to(directory)): p.read_bytes()
            for p in sorted(directory.rglob("*"))
            if p.is_file() and not p.name.endswith(("-shm", "-wal"))}


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A data directory (a migrated database, two stored documents, a ballot key) and its
    backup, made once for the module (two CLI runs, 3-7 s a test on a loaded box): the tests
    only read them (a refused restore onto `data` may leave its hopso.lock there)."""
    tmp_path = tmp_path_factory.mktemp("backup-source")
    data = tmp_path / "source"
    data.mkdir()
    shutil.copyfile(migrated_sqlite(), data / "hopso.sqlite3")
    store = BlobStore(data / "documents", durable=False)
    for n in range(2):
        store.put_bytes(b"%PDF-1.7 " + bytes([n]) * 40000)
    (store.derived_dir(store.put_bytes(b"%PDF-1.7 x").digest) / "p1.png").parent.mkdir(
        parents=True)
    BallotKey.load_or_create(Settings(data_dir=data).ballot_key_path)
    archive = tmp_path / "good.backup"
    done = backup_cli("backup", "--data-dir", str(data), "--out", str(archive))
    assert done.returncode == 0, done.stderr
    assert backup_cli("verify", str(archive)).returncode == 0
    return data, archive


def fresh(tmp_path: Path, name: str) -> Path:
    target = tmp_path / name
    target.mkdir()
    return target


def test_a_truncated_or_lengthened_backup_is_refused_and_nothing_is_restored(
        tmp_path: Path, source: tuple[Path, Path]) -> None:
    _, archive = source
    data = archive.read_bytes()
    # In the header, in the database, before the manifest, in tar's trailing zeros.
    for n, cut in enumerate((700, len(data) // 2, len(data) - 10240 - 300, len(data) - 1)):
        bad = tmp_path / f"cut{n}.backup"
        bad.write_bytes(data[:cut])
        if n % 2:
            refused(backup_cli("verify", str(bad)))
            continue
        target = fresh(tmp_path, f"t{n}")
        refused(backup_cli("restore", str(bad), "--data-dir", str(target)))
        assert sorted(p.name for p in target.iterdir()) == ["hopso.lock"], cut
    longer = tmp_path / "longer.backup"
    longer.write_bytes(data + b"\0" * 512)
    refused(backup_cli("verify", str(longer)), "appended")


def test_a_changed_byte_is_refused(tmp_path: Path, source: tuple[Path, Path]) -> None:
    _, archive = source
    data = bytearray(archive.read_bytes())
    at = data.index(b"%PDF-1.7 \x01") + 1000  # inside a stored document
    data[at] ^= 0xFF
    bad = tmp_path / "flipped.backup"
    bad.write_bytes(bytes(data))
    refused(backup_cli("verify", str(bad)), "damaged")
    target = fresh(tmp_path, "t")
    refused(backup_cli("restore", str(bad), "--data-dir", str(target)), "damaged")
    assert not (target / "documents").exists() and not (target / "hopso.sqlite3").exists()


def test_a_restore_refuses_a_data_directory_in_use_or_not_empty(
        tmp_path: Path, source: tuple[Path, Path]) -> None:
    data, archive = source
    before = listing(data)
    # Onto its own (live) data directory, and onto one holding anything at all.
    refused(backup_cli("restore", str(archive), "--data-dir", str(data)),
            "this installation already", "nothing overwritten")
    assert listing(data) == {**before, "hopso.lock": listing(data)["hopso.lock"]}
    target = fresh(tmp_path, "t")
    (target / "notes.txt").write_text("giữ nguyên")
    refused(backup_cli("restore", str(archive), "--data-dir", str(target)), "not empty")
    assert (target / "notes.txt").read_text() == "giữ nguyên"
    assert not (target / "hopso.sqlite3").exists()
    # A backup file is never overwritten.
    size = archive.stat().st_size
    refused(backup_cli("backup", "--data-dir", str(data), "--out", str(archive)),
            "already exists")
    assert archive.stat().st_size == size


def test_a_backup_of_another_installation_is_refused(
        tmp_path: Path, source: tuple[Path, Path]) -> None:
    data, archive = source
    # A data directory whose database is another installation's.
    other = fresh(tmp_path, "other")
    shutil.copyfile(data / "hopso.sqlite3", other / "hopso.sqlite3")
    with contextlib.closing(sqlite3.connect(other / "hopso.sqlite3")) as conn, conn:
        (ours,) = conn.execute("SELECT installation_id FROM installation").fetchone()
        # Another first digit (a fixed 'f' changed nothing for the 1 id in 16 starting so).
        theirs = ("e" if ours[0] == "f" else "f") + ours[1:]
        conn.execute("UPDATE installation SET installation_id = ?", (theirs,))
    line = refused(backup_cli("restore", str(archive), "--data-dir", str(other)),
                   f"holds installation {theirs}")
    assert "nothing overwritten" in line
    # A fresh data directory given another installation's ballot key.
    target = fresh(tmp_path, "t")
    BallotKey.load_or_create(target / "ballot.key")
    refused(backup_cli("restore", str(archive), "--data-dir", str(target)),
            "another installation's")
    assert sorted(p.name for p in target.iterdir()) == ["ballot.key", "hopso.lock"]
    # The right key, kept apart from the backups as docs/backup.md says: restored.
    target = fresh(tmp_path, "right")
    shutil.copy2(data / "ballot.key", target / "ballot.key")
    done = backup_cli("restore", str(archive), "--data-dir", str(target))
    assert done.returncode == 0, done.stderr
    assert {k: v for k, v in listing(target).items() if k.startswith("documents/")} == \
        {k: v for k, v in listing(data).items() if k.startswith(("documents/blobs",
                                                                 "documents/derived"))}


def test_a_backup_of_a_newer_schema_is_refused(tmp_path: Path,
                                               source: tuple[Path, Path]) -> None:
    data, _ = source
    newer = tmp_path / "newer.backup"
    writer = ArchiveWriter(newer, Header(installation_id="a" * 32, database="sqlite",
                                         schema=["0001", "9999_from_the_future"],
                                         created_at="2030-01-01T00:00:00+00:00",
                                         release="9.0"))
    writer.add_file(SQLITE_MEMBER, data / "hopso.sqlite3")
    writer.finish()
    assert backup_cli("verify", str(newer)).returncode == 0  # whole, but not for us
    target = fresh(tmp_path, "t")
    refused(backup_cli("restore", str(newer), "--data-dir", str(target)), "newer", "9.0")
    assert sorted(p.name for p in target.iterdir()) == ["hopso.lock"]


def test_what_is_not_a_backup_is_refused(tmp_path: Path) -> None:
    for name, data in (("empty", b""), ("text", b"hello\n" * 100),
                       ("pdf", b"%PDF-1.7\n" + b"\0" * 4000)):
        path = tmp_path / name
        path.write_bytes(data)
        refused(backup_cli("verify", str(path)))
    refused(backup_cli("verify", str(tmp_path / "missing")), "no backup file")
    refused(backup_cli("backup", "--data-dir", str(tmp_path / "nothing"), "--out",
                       str(tmp_path / "x.backup")), "no data directory")
    (tmp_path / "nothing").mkdir()
    refused(backup_cli("backup", "--data-dir", str(tmp_path / "nothing"), "--out",
                       str(tmp_path / "x.backup")), "no database")
    assert not (tmp_path / "x.backup").exists()
    assert not list(tmp_path.glob(".hopso-backup-*"))


def test_the_sqlite_copy_is_one_moment_of_a_database_being_written(tmp_path: Path) -> None:
    """Rows written in transactions of two while the backup copies: the copy never holds
    one row of a pair without the other (SQLite's backup API reads one snapshot)."""
    data = tmp_path / "busy"
    data.mkdir()
    shutil.copyfile(migrated_sqlite(), data / "hopso.sqlite3")
    with sqlite3.connect(data / "hopso.sqlite3") as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE pair (n INTEGER, half INTEGER, pad BLOB)")

    async def writer(stop: asyncio.Event) -> int:
        conn = sqlite3.connect(data / "hopso.sqlite3", timeout=30)
        n = 0
        while not stop.is_set():
            with conn:
                for half in (0, 1):
                    conn.execute("INSERT INTO pair VALUES (?, ?, randomblob(2000))", (n, half))
            n += 1
            await asyncio.sleep(0)
        conn.close()
        return n

    async def run() -> int:
        stop = asyncio.Event()
        task = asyncio.create_task(writer(stop))
        done = await asyncio.to_thread(backup_cli, "backup", "--data-dir", str(data), "--out",
                                       str(tmp_path / "busy.backup"))
        stop.set()
        assert done.returncode == 0, done.stderr
        return await task
    written = asyncio.run(run())
    target = fresh(tmp_path, "t")
    assert backup_cli("restore", str(tmp_path / "busy.backup"), "--data-dir",
                      str(target)).returncode == 0
    with sqlite3.connect(target / "hopso.sqlite3") as conn:
        halves = dict(conn.execute("SELECT n, count(*) FROM pair GROUP BY n").fetchall())
    assert halves and set(halves.values()) == {2}, "a transaction was copied in part"
    assert 0 < len(halves) <= written


def test_a_target_disk_that_fills_up_midway_is_named_and_cleaned(tmp_path: Path) -> None:
    """The restore meets a full disk after the database and a document are written: one line
    naming the target (not "the backup is damaged", which would send an operator after a
    good file), everything it wrote removed, and the backup still verifies."""
    data = tmp_path / "source"
    data.mkdir()
    shutil.copyfile(migrated_sqlite(), data / "hopso.sqlite3")
    store = BlobStore(data / "documents", durable=False)
    for _ in range(3):
        store.put_bytes(b"%PDF-1.7 " + os.urandom(600_000))
    archive = tmp_path / "good.backup"
    assert backup_cli("backup", "--data-dir", str(data), "--out", str(archive)).returncode == 0
    target = tmp_path / "small-disk"
    target.mkdir()
    room_kb = (data / "hopso.sqlite3").stat().st_size // 1024 + 900  # one document fits
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={room_kb}k", "tmpfs",
                              str(target)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root with CAP_SYS_ADMIN): "
                    f"{mounted.stderr.strip()}")
    try:
        line = refused(backup_cli("restore", str(archive), "--data-dir", str(target)),
                       "could not write", str(target), "No space left on device",
                       "not at fault")
        assert "damaged" not in line and "truncated" not in line
        assert sorted(p.name for p in target.iterdir()) == ["hopso.lock"]
    finally:
        subprocess.run(["umount", str(target)], check=True)
    assert backup_cli("verify", str(archive)).returncode == 0
