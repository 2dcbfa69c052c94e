"""Content-addressed blob store: ``<root>/blobs/ab/cd/<sha256>``.

Uploaded file names are never used as paths (they are attacker-controlled);
they are only sanitised for display and Content-Disposition. Writes go to a
temp file in ``<root>/tmp`` (same filesystem) and are published with
``os.replace`` so readers never see a half-written blob. The store does
blocking file I/O; call it from a thread when chunks are large.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import time
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Self
from urllib.parse import quote

from documents.errors import DocumentRejected, RejectCode

_DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")
_MAX_NAME_CHARS = 180
DEFAULT_NAME = "tai-lieu.pdf"


@dataclass(frozen=True)
class StoredBlob:
    digest: str  # lowercase hex sha256
    path: Path
    size: int
    duplicate: bool  # the same bytes were already stored
    display_name: str  # sanitised original name (metadata only)


class BlobStore:
    def __init__(self, root: Path | str, *, durable: bool = True) -> None:
        self.root = Path(root)
        self.durable = durable  # fsync file + directory before reporting success
        self._blobs = self.root / "blobs"
        self._tmp = self.root / "tmp"
        self._derived = self.root / "derived"
        for d in (self._blobs, self._tmp, self._derived):
            d.mkdir(parents=True, exist_ok=True)

    def path_for(self, digest: str) -> Path:
        if not _DIGEST_RE.match(digest):
            raise ValueError("invalid blob digest")
        return self._blobs / digest[:2] / digest[2:4] / digest

    def derived_dir(self, digest: str, variant: str = "default") -> Path:
        """Directory for rasters/thumbnails/sanitised copy derived from a blob."""
        if not re.fullmatch(r"[a-z0-9_-]{1,40}", variant):
            raise ValueError("invalid variant name")
        self.path_for(digest)  # validates digest
        return self._derived / digest[:2] / digest[2:4] / digest / variant

    def exists(self, digest: str) -> bool:
        return self.path_for(digest).is_file()

    def open(self, digest: str) -> BinaryIO:
        return open(self.path_for(digest), "rb")

    def delete(self, digest: str) -> bool:
        """Remove a blob and its derived files (caller checks nothing references it)."""
        path = self.path_for(digest)
        shutil.rmtree(self._derived / digest[:2] / digest[2:4] / digest, ignore_errors=True)
        try:
            path.unlink()
            return True
        except FileNotFoundError:
            return False

    def writer(self, *, max_bytes: int | None = None, original_name: str | None = None) -> BlobWriter:
        return BlobWriter(self, max_bytes, original_name)

    def put_bytes(self, data: bytes, original_name: str | None = None) -> StoredBlob:
        with self.writer(original_name=original_name) as w:
            w.write(data)
            return w.commit()

    def put_stream(
        self,
        chunks: Iterable[bytes],
        *,
        max_bytes: int | None = None,
        original_name: str | None = None,
    ) -> StoredBlob:
        with self.writer(max_bytes=max_bytes, original_name=original_name) as w:
            for chunk in chunks:
                w.write(chunk)
            return w.commit()

    def purge_temp(self, older_than: float = 3600.0) -> int:
        """Remove temp files left by a crash mid-upload; call at start-up."""
        cutoff = time.time() - older_than
        removed = 0
        for path in self._tmp.iterdir():
            if path.stat().st_mtime < cutoff:
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    def _publish(self, tmp_path: Path, digest: str) -> tuple[Path, bool]:
        final = self.path_for(digest)
        if final.is_file():
            tmp_path.unlink(missing_ok=True)
            return final, True
        final.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(tmp_path, 0o444)  # blobs are immutable
        os.replace(tmp_path, final)  # atomic; a concurrent identical write is harmless
        if self.durable:
            _fsync_dir(final.parent)
        return final, False


class BlobWriter:
    """Incremental writer: hash while streaming, enforce the size limit early."""

    def __init__(self, store: BlobStore, max_bytes: int | None, original_name: str | None):
        self._store = store
        self._max = max_bytes
        self._name = sanitize_display_name(original_name)
        self._hash = hashlib.sha256()
        self._size = 0
        fd, tmp = tempfile.mkstemp(dir=store._tmp, prefix="upload-")
        self._tmp_path = Path(tmp)
        self._fh: BinaryIO | None = os.fdopen(fd, "wb")

    @property
    def size(self) -> int:
        return self._size

    def write(self, chunk: bytes) -> None:
        if self._fh is None:
            raise ValueError("writer is closed")
        self._size += len(chunk)
        if self._max is not None and self._size > self._max:
            self.abort()
            raise DocumentRejected(
                RejectCode.TOO_LARGE, f">{self._max} bytes", limit_mb=max(1, self._max >> 20)
            )
        self._hash.update(chunk)
        self._fh.write(chunk)

    def commit(self) -> StoredBlob:
        if self._fh is None:
            raise ValueError("writer is closed")
        self._fh.flush()
        if self._store.durable:
            os.fsync(self._fh.fileno())
        self._fh.close()
        self._fh = None
        digest = self._hash.hexdigest()
        path, duplicate = self._store._publish(self._tmp_path, digest)
        return StoredBlob(digest, path, self._size, duplicate, self._name)

    def abort(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        self._tmp_path.unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.abort()  # no-op after commit; removes the temp file otherwise


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sanitize_display_name(name: str | None, default: str = DEFAULT_NAME) -> str:
    """Make an uploaded file name safe to show and to put in a header.

    Drops any directory part (incl. Windows 'C:\\fakepath\\'), control and
    format characters (bidi overrides can disguise 'gpj.exe' as 'exe.jpg'),
    leading dots, and caps the length while keeping the extension.
    """
    if not name:
        return default
    name = unicodedata.normalize("NFC", name)
    name = re.split(r"[\\/]", name)[-1]
    name = "".join(
        " " if c.isspace() else c
        for c in name
        if c.isspace() or unicodedata.category(c)[0] != "C"
    )
    name = " ".join(name.split()).strip(" .")
    if not name:
        return default
    if len(name) > _MAX_NAME_CHARS:
        stem, dot, ext = name.rpartition(".")
        if dot and 0 < len(ext) <= 10:
            name = stem[: _MAX_NAME_CHARS - len(ext) - 1].rstrip() + "." + ext
        else:
            name = name[:_MAX_NAME_CHARS]
    return name


def content_disposition(name: str | None, *, inline: bool = False) -> str:
    """RFC 6266 header value with an ASCII fallback ('Biên bản.pdf' -> 'Bien ban.pdf')."""
    display = sanitize_display_name(name)
    ascii_name = "".join(
        c if 32 <= ord(c) < 127 and c not in '"\\;' else "_"
        for c in _ascii_fold(display)
    )
    kind = "inline" if inline else "attachment"
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(display, safe='')}"


def _ascii_fold(name: str) -> str:
    # Unlike search folding this keeps case: 'Đà Nẵng' -> 'Da Nang'.
    name = name.replace("đ", "d").replace("Đ", "D")
    return "".join(c for c in unicodedata.normalize("NFD", name) if not unicodedata.combining(c))
