"""The meeting archive's file format: one ZIP holding the record of a meeting, and a
`manifest.json` naming every other member with its SHA-256 and size (docs/operations.md,
"The meeting archive").

The archive is written under `<name>.partial` and renamed to its name only once every member,
the manifest and the file's own data are on disk (fsync), so an archive that exists under its
name is complete; a failed write (a full disk) removes the partial file and raises
ArchiveWriteError saying why. Blocking: run it off the event loop.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMAT = "hopso-meeting-archive"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CHUNK = 1024 * 1024
# Already compressed: stored as they are (deflating them costs CPU and gains nothing).
STORED_SUFFIXES = {".webm", ".ts", ".mkv", ".mp4", ".pdf", ".jpg", ".png"}


class ArchiveWriteError(Exception):
    """The archive could not be written; nothing is left under its name."""


@dataclass(frozen=True)
class Member:
    """One file of the archive: its path inside it, from a file on disk or from bytes."""

    path: str
    kind: str  # minutes | minutes_signed | document | annotated | recording | timeline | chat | audit
    source: Path | None = None
    data: bytes | None = None
    about: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.source is None) == (self.data is None):
            raise ValueError(f"{self.path}: give a source file or data, not both")
        if not safe_member_path(self.path) or self.path == MANIFEST:
            raise ValueError(f"not a member path: {self.path!r}")


def safe_member_path(path: str) -> bool:
    """Relative, forward slashes, no `..`, no empty or hidden parts: extracting the archive
    anywhere never writes outside the target directory."""
    parts = path.split("/")
    return (0 < len(path) <= 240 and not path.startswith("/") and "\\" not in path
            and all(p and p not in (".", "..") and not p.startswith(".") for p in parts))


@dataclass(frozen=True)
class WrittenArchive:
    path: Path
    size: int
    sha256: str  # of the whole file
    manifest_sha256: str  # of manifest.json: what the audit entry records
    members: int


def write_archive(target: Path, header: dict[str, Any], members: Iterable[Member],
                  progress: Callable[[int, int], None] | None = None) -> WrittenArchive:
    """Write the archive at `target` (header: the manifest's fields besides `members`).
    progress(done, total) is called after each member (from this thread)."""
    listed = list(members)
    paths = [m.path for m in listed]
    if len(set(paths)) != len(paths):
        raise ValueError("two members with the same path")
    partial = target.with_name(target.name + ".partial")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        entries = []
        with zipfile.ZipFile(partial, "w", allowZip64=True) as zf:
            for done, member in enumerate(listed, 1):
                entries.append(_write_member(zf, member))
                if progress is not None:
                    progress(done, len(listed))
            manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, **header,
                        "members": entries}
            text = json.dumps(manifest, ensure_ascii=False, indent=1, sort_keys=True).encode()
            zf.writestr(MANIFEST, text, compress_type=zipfile.ZIP_DEFLATED)
        with open(partial, "rb+") as fh:
            os.fsync(fh.fileno())
        whole = _sha256_file(partial)
        os.replace(partial, target)
        _fsync_dir(target.parent)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise ArchiveWriteError(f"cannot write {target.name}: {exc.strerror or exc}") from exc
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return WrittenArchive(target, target.stat().st_size, whole,
                          hashlib.sha256(text).hexdigest(), len(entries))


def _write_member(zf: zipfile.ZipFile, member: Member) -> dict[str, Any]:
    digest, size = hashlib.sha256(), 0
    suffix = os.path.splitext(member.path)[1].lower()
    info = zipfile.ZipInfo(member.path, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED if suffix in STORED_SUFFIXES else zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    with zf.open(info, "w", force_zip64=True) as out:
        if member.data is not None:
            out.write(member.data)
            digest.update(member.data)
            size = len(member.data)
        else:
            assert member.source is not None
            with open(member.source, "rb") as src:
                while chunk := src.read(CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
    return {"path": member.path, "kind": member.kind, "sha256": digest.hexdigest(),
            "size": size, **({"about": member.about} if member.about else {})}


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def free_bytes(path: Path) -> int:
    """Free space where `path` lives (its nearest existing parent)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free
