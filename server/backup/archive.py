"""The backup file: a tar whose first member says what it is and whose last member lists
the SHA-256 and size of every other one.

    backup.json                 format, installation id, database kind, schema revisions,
                                ballot key id, time, release
    database/hopso.sqlite3      or database/postgresql.dump (pg_dump's custom format)
    documents/blobs/...         the content-addressed store and what was derived from it
    documents/derived/...
    manifest.json               {"header": sha256 of backup.json, "files": {name: [sha256, size]}}

A reader checks every byte against the manifest and that the file ends exactly where tar's
end-of-archive blocks and record padding say it must, so a backup cut short anywhere (even
in its trailing zeros) or with anything appended is refused. Names are checked against what
a writer makes (no absolute paths, no `..`, regular files only) and a reader never lets tar
extract anything: the caller writes each verified file itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

FORMAT = "hopso-backup/1"
HEADER = "backup.json"
MANIFEST = "manifest.json"
SQLITE_MEMBER = "database/hopso.sqlite3"
POSTGRES_MEMBER = "database/postgresql.dump"
_CHUNK = 1 << 20
_NAME = re.compile(r"database/(hopso\.sqlite3|postgresql\.dump)"
                   r"|documents/(blobs|derived)(/[A-Za-z0-9_][A-Za-z0-9_.-]{0,120}){1,8}"
                   r"|recordings(/[A-Za-z0-9_][A-Za-z0-9_.-]{0,120}){1,8}")


class BackupRefused(Exception):
    """A backup, restore or migration that must not go on; the message is one line and
    nothing was changed."""


@dataclass(frozen=True)
class Header:
    installation_id: str
    database: str  # "sqlite" or "postgresql"
    schema: list[str]  # the database's alembic revisions (its heads)
    created_at: str
    release: str
    ballot_key_id: str | None = None  # the key the installation seals secret ballots with
    format: str = FORMAT

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Header:
        try:
            fields = json.loads(data)
            header = cls(**fields)
        except (ValueError, TypeError) as exc:
            raise BackupRefused(f"not a Hopso backup ({HEADER} unreadable: {exc})") from None
        if header.format != FORMAT:
            raise BackupRefused(f"backup format {header.format!r} is not {FORMAT!r}")
        return header


@dataclass
class _Hashing:
    """Reads a file for tar while hashing what tar took."""

    raw: IO[bytes]
    digest: Any = field(default_factory=hashlib.sha256)
    size: int = 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.digest.update(data)
        self.size += len(data)
        return data


class ArchiveWriter:
    """Writes `<out>.partial` and renames it to `out` only once complete and synced: a
    failed or interrupted backup never leaves a file that looks like a backup."""

    def __init__(self, out: Path, header: Header) -> None:
        if out.exists():
            raise BackupRefused(f"{out} already exists: refused, nothing overwritten")
        self.out = out
        self.partial = out.with_name(out.name + ".partial")
        self._raw = open(self.partial, "xb")  # noqa: SIM115 - closed by finish/abort
        self._tar = tarfile.open(fileobj=self._raw, mode="w:",  # noqa: SIM115 - as above
                                 format=tarfile.PAX_FORMAT)
        self.files: dict[str, list[Any]] = {}
        data = header.to_json()
        self._header_hash = hashlib.sha256(data).hexdigest()
        self._add_bytes(HEADER, data)

    def _add_bytes(self, name: str, data: bytes) -> None:
        import io
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(data), 0o644
        self._tar.addfile(info, io.BytesIO(data))

    def add_file(self, name: str, path: Path) -> None:
        if not _NAME.fullmatch(name):
            raise ValueError(f"unexpected member name {name!r}")
        with open(path, "rb") as raw:
            stat = os.fstat(raw.fileno())
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = stat.st_size, stat.st_mode & 0o777, stat.st_mtime
            reader = _Hashing(raw)
            self._tar.addfile(info, reader)  # type: ignore[arg-type]
        self.files[name] = [reader.digest.hexdigest(), reader.size]

    def finish(self) -> None:
        manifest = {"header": self._header_hash, "files": self.files}
        self._add_bytes(MANIFEST, json.dumps(manifest, indent=0, sort_keys=True).encode())
        self._tar.close()
        self._raw.flush()
        os.fsync(self._raw.fileno())
        self._raw.close()
        if self.out.exists():  # made meanwhile by someone else: theirs is kept
            self.abort()
            raise BackupRefused(f"{self.out} already exists: refused, nothing overwritten")
        os.rename(self.partial, self.out)
        fd = os.open(self.out.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def abort(self) -> None:
        if not self._raw.closed:
            self._raw.close()
        self.partial.unlink(missing_ok=True)


Sink = Callable[[str, Iterator[bytes]], None]


def read_archive(path: Path, *, on_header: Callable[[Header], None] | None = None,
                 expected: dict[str, list[Any]] | None = None, sink: Sink | None = None
                 ) -> tuple[Header, dict[str, list[Any]]]:
    """Read and check the whole backup: its header (handed to `on_header` first, to refuse
    early), every member's bytes against the manifest, and its exact length. `sink` gets each
    file's verified chunks as they are read (a chunk is hashed before it is handed on; a
    file whose hash then fails raises before the caller is told it ended, so only call this
    with a sink after a pass without one). Returns the header and the manifest's files."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as raw, tarfile.open(fileobj=raw, mode="r:") as tar:
            return _read(tar, size, on_header, expected, sink)
    except BackupRefused:
        raise
    except FileNotFoundError:
        raise BackupRefused(f"no backup file {path}") from None
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise BackupRefused(f"{path} is truncated or damaged ({exc}): refused, nothing "
                            f"restored") from None


def _read(tar: tarfile.TarFile, size: int, on_header: Callable[[Header], None] | None,
          expected: dict[str, list[Any]] | None, sink: Sink | None
          ) -> tuple[Header, dict[str, list[Any]]]:
    header: Header | None = None
    header_hash = ""
    seen: dict[str, list[Any]] = {}
    manifest: dict[str, Any] | None = None
    end = 0
    for member in tar:
        if manifest is not None:
            raise BackupRefused(f"member {member.name!r} after the manifest: refused")
        if not member.isreg():
            raise BackupRefused(f"member {member.name!r} is not a regular file: refused")
        source = tar.extractfile(member)
        assert source is not None
        end = member.offset_data + -(-member.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
        if header is None:
            if member.name != HEADER or member.size > 65536:
                raise BackupRefused(f"not a Hopso backup (first member {member.name!r})")
            data = source.read()
            header, header_hash = Header.from_json(data), hashlib.sha256(data).hexdigest()
            if on_header is not None:
                on_header(header)
            continue
        if member.name == MANIFEST:
            try:
                manifest = json.loads(source.read(64 << 20))
            except ValueError:
                raise BackupRefused("the manifest is unreadable: refused") from None
            continue
        if not _NAME.fullmatch(member.name) or member.name in seen:
            raise BackupRefused(f"unexpected member {member.name!r}: refused")
        want = (expected or {}).get(member.name)
        if expected is not None and want is None:
            raise BackupRefused(f"member {member.name!r} is not in the manifest: refused")
        digest = hashlib.sha256()

        def chunks(src: IO[bytes] = source, h: Any = digest) -> Iterator[bytes]:
            while data := src.read(_CHUNK):
                h.update(data)
                yield data
        if sink is None:
            for _ in chunks():
                pass
        else:
            sink(member.name, _checked(chunks(), digest, want, member.name))
        seen[member.name] = [digest.hexdigest(), member.size]
    if header is None:
        raise BackupRefused("empty file: not a Hopso backup")
    if manifest is None or not isinstance(manifest.get("files"), dict):
        raise BackupRefused("the manifest is missing: the backup is truncated, refused")
    files: dict[str, list[Any]] = manifest["files"]
    if manifest.get("header") != header_hash:
        raise BackupRefused("the header does not match the manifest: refused")
    for name in sorted(set(files) | set(seen)):
        if files.get(name) != seen.get(name):
            problem = "missing" if name not in seen else "changed"
            raise BackupRefused(f"{name} is {problem} (its SHA-256 or size differs from the "
                                f"manifest): the backup is damaged, refused")
    # What tar writes after the last member: two zero blocks, then zeros to a full record.
    record = tarfile.RECORDSIZE
    if size != -(-(end + 2 * tarfile.BLOCKSIZE) // record) * record:
        raise BackupRefused(f"the file is {size} bytes where its members end at {end}: the "
                            f"backup is truncated or has bytes appended, refused")
    return header, files


def _checked(chunks: Iterator[bytes], digest: Any, want: list[Any] | None, name: str
             ) -> Iterator[bytes]:
    yield from chunks
    if want is not None and digest.hexdigest() != want[0]:
        raise BackupRefused(f"{name} changed since it was verified: refused")
