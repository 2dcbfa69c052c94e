"""The in-memory annotation logs: one AnnotationLog per document (its current version), rebuilt
from the stored ops when missing, and one lock per document that serialises everything done
to its log.

Memory is bounded: each log keeps its newest `max_records` records (older ones stay in the
database, server/documents/annotation_store.py), and the cache holds at most `max_cached`
documents and `max_cached_entries` records + live annotations in all (least recently used
first out).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from documents import oplog
from documents.annotation_ops import AnnotationLog
from documents.annotations import DEFAULT_LIMITS, AnnotationLimits
from documents.db_models import AnnotationOp, Document, DocumentVersion
from documents.op_records import OpRecord
from documents.op_window import DEFAULT_MAX_RECORDS
from rooms.db import Database
from rooms.errors import Conflict, NotFound


class StaleVersion(Conflict):
    code = "stale_version"


class NotReady(Conflict):
    code = "not_ready"


@dataclass
class _Cached:
    version: int
    log: AnnotationLog


class LogCache:
    def __init__(self, db: Database, limits: AnnotationLimits = DEFAULT_LIMITS,
                 max_cached: int = 256, max_records: int = DEFAULT_MAX_RECORDS,
                 max_cached_entries: int = 32 * DEFAULT_MAX_RECORDS) -> None:
        self.db, self.limits, self.max_cached = db, limits, max_cached
        self.max_records, self.max_cached_entries = max_records, max_cached_entries
        self._logs: OrderedDict[int, _Cached] = OrderedDict()
        self._locks: dict[int, asyncio.Lock] = {}

    def lock(self, document_id: int) -> asyncio.Lock:
        return self._locks.setdefault(document_id, asyncio.Lock())

    def evict(self, document_id: int) -> None:
        self._logs.pop(document_id, None)

    def cached(self, document_id: int) -> AnnotationLog | None:
        """The cached log of the document, whatever its version (None if not cached)."""
        found = self._logs.get(document_id)
        return found.log if found is not None else None

    def cached_entries(self, document_id: int) -> int:
        """Records + live annotations held in memory for the document (0 if not cached)."""
        found = self.cached(document_id)
        return found.entries if found is not None else 0

    async def current(self, document_id: int, version: int) -> AnnotationLog:
        """The log of `version`, which must be the document's current one (call under lock)."""
        found = self._logs.get(document_id)
        if found is not None and found.version == version:
            self._logs.move_to_end(document_id)
            return found.log
        async with self.db.session() as s:
            doc = await s.get(Document, document_id)
            if doc is None:
                raise NotFound(f"document {document_id} not found")
            if doc.version != version:
                raise StaleVersion(f"version {version} is not the current version "
                                   f"({doc.version}); take a new snapshot")
            sizes = await _page_sizes(s, document_id, version)
            rows = await s.exec(select(AnnotationOp.record).where(
                AnnotationOp.document_id == document_id, AnnotationOp.version == version))
            records = list(rows.all())
        built = oplog.rebuild(str(document_id), sizes, records, self.limits, self.max_records)
        self.remember(document_id, version, built)
        return built

    def fresh(self, document_id: int, version: int, sizes: Sequence[tuple[float, float]],
              records: list[OpRecord]) -> None:
        """Cache a new log of `version` holding `records` (a new version just made current)."""
        log = AnnotationLog(str(document_id), list(sizes), limits=self.limits,
                            max_records=self.max_records)
        self.remember(document_id, version, oplog.replay(log, records))

    def remember(self, document_id: int, version: int, built: AnnotationLog) -> None:
        self._logs[document_id] = _Cached(version, built)
        self._logs.move_to_end(document_id)
        self.bound()

    def bound(self) -> None:
        """Evict least recently used logs past the document or size cap (never the newest)."""
        while len(self._logs) > self.max_cached:
            self._logs.popitem(last=False)
        if len(self._logs) > 1:
            total = sum(c.log.entries for c in self._logs.values())
            while total > self.max_cached_entries and len(self._logs) > 1:
                total -= self._logs.popitem(last=False)[1].log.entries


async def _page_sizes(s: AsyncSession, document_id: int, version: int
                      ) -> list[tuple[float, float]]:
    rows = await s.exec(select(DocumentVersion).where(
        DocumentVersion.document_id == document_id, col(DocumentVersion.number) == version))
    found = rows.first()
    if found is None or not found.status.usable or not found.page_sizes:
        raise NotReady("the document is not processed yet; annotations open when it is ready")
    return [(float(w), float(h)) for w, h in found.page_sizes]
