"""Reading a SQLite database the way an attacker holding the files would: the main file's
pages and the WAL's frames, parsed from bytes (https://sqlite.org/fileformat2.html), never
through SQL. Enough of the format for small records: B-tree leaf and index-interior cells,
record decoding, each page's free space, the freelist, and every WAL frame (stale ones too).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_INT_SIZES = {1: 1, 2: 2, 3: 3, 4: 4, 5: 6, 6: 8}
TABLE_LEAF, INDEX_LEAF, TABLE_INTERIOR, INDEX_INTERIOR = 13, 10, 5, 2


def varint(buf: bytes, i: int) -> tuple[int, int]:
    value = 0
    for n in range(9):
        byte = buf[i + n]
        if n == 8:
            return (value << 8) | byte, i + 9
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, i + n + 1
    raise AssertionError("unreachable")


def record(payload: bytes) -> list[Any] | None:
    """The values of a record, or None if these bytes are not one."""
    try:
        size, i = varint(payload, 0)
        types = []
        while i < size:
            t, i = varint(payload, i)
            types.append(t)
        j, values = size, []
        for t in types:
            n = 0
            value: Any
            if t == 0:
                value = None
            elif t in _INT_SIZES:
                n = _INT_SIZES[t]
                value = int.from_bytes(payload[j:j + n], "big", signed=True)
            elif t == 7:
                n, value = 8, struct.unpack(">d", payload[j:j + 8])[0]
            elif t in (8, 9):
                value = t - 8
            elif t >= 12:
                n = (t - 12) // 2
                raw = payload[j:j + n]
                value = raw if t % 2 == 0 else raw.decode("utf-8", "replace")
            else:
                return None
            j += n
            if j > len(payload):
                return None
            values.append(value)
        return values
    except IndexError:
        return None


@dataclass
class Cell:
    page: int  # page number (1-based)
    offset: int  # where the cell starts in its page: content is allocated downwards
    rowid: int | None
    values: list[Any]


@dataclass
class Page:
    number: int
    data: bytes
    cells: list[Cell] = field(default_factory=list)
    free: list[tuple[int, int]] = field(default_factory=list)  # (start, end) byte ranges

    def free_bytes(self) -> bytes:
        return b"".join(self.data[a:b] for a, b in self.free)


def parse_page(number: int, data: bytes, usable: int) -> Page:
    """Cells and free space of a B-tree page; anything else is all free space."""
    page = Page(number, data)
    hdr = 100 if number == 1 else 0
    kind = data[hdr]
    if kind not in (TABLE_LEAF, INDEX_LEAF, TABLE_INTERIOR, INDEX_INTERIOR):
        page.free = [(0, len(data))]
        return page
    count = int.from_bytes(data[hdr + 3:hdr + 5], "big")
    pointers = hdr + (12 if kind in (TABLE_INTERIOR, INDEX_INTERIOR) else 8)
    used = [(0, pointers + 2 * count)]
    max_local = usable - 35 if kind == TABLE_LEAF else (usable - 12) * 64 // 255 - 23
    for k in range(count):
        start = int.from_bytes(data[pointers + 2 * k:pointers + 2 * k + 2], "big")
        i = start + (4 if kind in (TABLE_INTERIOR, INDEX_INTERIOR) else 0)
        if kind == TABLE_INTERIOR:
            _, i = varint(data, i)
            used.append((start, i))
            continue
        size, i = varint(data, i)
        rowid = None
        if kind == TABLE_LEAF:
            rowid, i = varint(data, i)
        if size > max_local:  # spills to overflow pages: not a ballot; keep its local part
            used.append((start, min(len(data), i + max_local + 4)))
            continue
        used.append((start, i + size))
        values = record(data[i:i + size])
        if values is not None:
            page.cells.append(Cell(number, start, rowid, values))
    end, free = 0, []
    for a, b in sorted(used):
        if a > end:
            free.append((end, a))
        end = max(end, b)
    if end < usable:
        free.append((end, usable))
    page.free = free
    return page


@dataclass
class Frame:
    index: int  # position in the WAL file
    page: int
    commit: bool  # the last frame of a transaction
    valid: bool  # salts match the WAL header: part of the current database
    data: bytes


@dataclass
class DatabaseFiles:
    page_size: int
    usable: int
    main: bytes
    wal: bytes
    frames: list[Frame]

    @classmethod
    def read(cls, path: Path) -> DatabaseFiles:
        main = path.read_bytes()
        wal_path = path.with_name(path.name + "-wal")
        wal = wal_path.read_bytes() if wal_path.exists() else b""
        page_size = int.from_bytes(main[16:18], "big")
        page_size = 65536 if page_size == 1 else page_size
        usable = page_size - main[20]
        frames: list[Frame] = []
        if len(wal) >= 32:
            salts = wal[16:24]
            at, n = 32, 0
            while at + 24 + page_size <= len(wal):
                head = wal[at:at + 24]
                frames.append(Frame(n, int.from_bytes(head[0:4], "big"),
                                    int.from_bytes(head[4:8], "big") > 0, head[8:16] == salts,
                                    wal[at + 24:at + 24 + page_size]))
                at, n = at + 24 + page_size, n + 1
        return cls(page_size, usable, main, wal, frames)

    def current(self) -> dict[int, bytes]:
        """The database as SQLite sees it: the main file with the WAL's committed frames."""
        pages = {n + 1: self.main[n * self.page_size:(n + 1) * self.page_size]
                 for n in range(len(self.main) // self.page_size)}
        pending: dict[int, bytes] = {}
        for frame in self.frames:
            if not frame.valid:
                break
            pending[frame.page] = frame.data
            if frame.commit:
                pages.update(pending)
                pending = {}
        return pages

    def pages(self) -> list[Page]:
        return [parse_page(n, data, self.usable) for n, data in sorted(self.current().items())]

    def freelist(self) -> set[int]:
        pages = self.current()
        trunk = int.from_bytes(pages[1][32:36], "big")
        found: set[int] = set()
        while trunk and trunk not in found:
            found.add(trunk)
            data = pages[trunk]
            count = int.from_bytes(data[4:8], "big")
            found.update(int.from_bytes(data[8 + 4 * k:12 + 4 * k], "big") for k in range(count))
            trunk = int.from_bytes(data[0:4], "big")
        return found

    def commits(self) -> list[list[Page]]:
        """Every transaction the WAL still holds, stale ones included, oldest first."""
        out: list[list[Page]] = [[]]
        for frame in self.frames:
            out[-1].append(parse_page(frame.page, frame.data, self.usable))
            if frame.commit:
                out.append([])
        return [c for c in out if c]
