"""The chair's recordings in a backup (docs/backup.md): the database's recording rows name
folders under <data dir>/recordings, so a restore without them would serve a meeting's
timeline with its files missing. Copied byte for byte (through a symbolic link to another
disk too), one still being written as far as it was, and left out with --no-recordings."""

from __future__ import annotations

import os
import shutil
import tarfile
import threading
import time
from pathlib import Path

from rooms.ballot_seal import BallotKey
from server.core.settings import Settings
from tests.conftest import migrated_sqlite
from tests.server.test_backup import backup_cli

FOLDER = "recordings/7/20261206T100000Z"


def data_dir(tmp_path: Path) -> Path:
    data = tmp_path / "source"
    data.mkdir()
    shutil.copyfile(migrated_sqlite(), data / "hopso.sqlite3")
    BallotKey.load_or_create(Settings(data_dir=data).ballot_key_path)
    # The recordings on a disk of their own, as an operator links one in.
    elsewhere = tmp_path / "recordings-disk"
    (elsewhere / "7" / "20261206T100000Z").mkdir(parents=True)
    (data / "recordings").symlink_to(elsewhere)
    for n, name in enumerate(("audio-1.webm", "video-2.webm", "packets-3.log")):
        (data / FOLDER / name).write_bytes(os.urandom(200_000 + n))
    return data


def recordings(data: Path) -> dict[str, bytes]:
    root = data / "recordings"
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def restore(tmp_path: Path, archive: Path, name: str) -> Path:
    target = tmp_path / name
    target.mkdir()
    done = backup_cli("restore", str(archive), "--data-dir", str(target))
    assert done.returncode == 0, done.stderr
    return target


def test_recordings_are_backed_up_and_restored_byte_for_byte(tmp_path: Path) -> None:
    data = data_dir(tmp_path)
    live = data / FOLDER / "video-9.webm"  # a recording still being written
    live.write_bytes(os.urandom(2_000_000))
    writing = threading.Event()
    writing.set()

    def append() -> None:
        # Growing at ~13 MB/s, a recorder's ~0.3 MB/s many times over; unpaced, it wrote
        # ~1 GB during the backup (seconds of I/O and CPU, more on a loaded box).
        with open(live, "ab") as f:
            while writing.is_set():
                f.write(os.urandom(65_536))
                f.flush()
                time.sleep(0.005)

    writer = threading.Thread(target=append)
    writer.start()
    archive = tmp_path / "with.backup"
    try:
        done = backup_cli("backup", "--data-dir", str(data), "--out", str(archive))
    finally:
        writing.clear()
        writer.join()
    assert done.returncode == 0, done.stderr
    assert backup_cli("verify", str(archive)).returncode == 0
    target = restore(tmp_path, archive, "restored")
    got, had = recordings(target), recordings(data)
    assert (target / "recordings").is_dir() and not (target / "recordings").is_symlink()
    name = "7/20261206T100000Z/video-9.webm"
    assert len(got[name]) >= 2_000_000 and had[name].startswith(got[name])  # as far as written
    assert {k: v for k, v in got.items() if k != name} == \
        {k: v for k, v in had.items() if k != name} and len(got) == 4


def test_no_recordings_leaves_them_out(tmp_path: Path) -> None:
    data = data_dir(tmp_path)
    archive = tmp_path / "without.backup"
    done = backup_cli("backup", "--no-recordings", "--data-dir", str(data), "--out", str(archive))
    assert done.returncode == 0, done.stderr
    with tarfile.open(archive) as tar:
        assert not [n for n in tar.getnames() if n.startswith("recordings")]
    target = restore(tmp_path, archive, "restored")
    assert not (target / "recordings").exists()
