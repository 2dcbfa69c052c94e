"""Retention: recordings and archive files kept for the configured number of days
(`--recording-retention-days`, `--archive-retention-days`; 0 keeps them), then deleted by a
periodic sweep, each deletion audited in its meeting's chain (`recording_deleted`,
`archive_deleted`, actor none: the system). The timeline rows stay (they are small and say
what happened); the replay no longer lists a deleted recording's tracks.

And each meeting's disk use, for the administrators (`GET /api/admin/storage`).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy import func
from sqlmodel import col, select

from documents.db_models import Document, DocumentVersion
from rooms import audit
from rooms.models import Meeting
from rooms.recording_log import Recording
from server.core import keys
from server.recording.keys import RECORDINGS

logger = logging.getLogger(__name__)

RECORDING_DELETED, ARCHIVE_DELETED = "recording_deleted", "archive_deleted"


def tree_size(path: Path) -> tuple[int, int]:
    """(bytes, files) under `path`; blocking."""
    total = count = 0
    if path.is_file():
        return path.stat().st_size, 1
    for p in path.rglob("*") if path.is_dir() else ():
        if p.is_file():
            total += p.stat().st_size
            count += 1
    return total, count


class Retention:
    def __init__(self, app: web.Application) -> None:
        self.app = app

    @property
    def data_dir(self) -> Path:
        return self.app[keys.SETTINGS].data_dir

    async def sweep(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """Delete what is past its time; returns what was deleted (also audited)."""
        now = now or datetime.now(UTC)
        settings = self.app[keys.SETTINGS]
        deleted: list[dict[str, Any]] = []
        if settings.recording_retention_days > 0:
            deleted += await self._recordings(now - timedelta(
                days=settings.recording_retention_days), settings.recording_retention_days)
        if settings.archive_retention_days > 0:
            deleted += await self._archives(now - timedelta(
                days=settings.archive_retention_days), settings.archive_retention_days)
        return deleted

    async def _recordings(self, cutoff: datetime, days: int) -> list[dict[str, Any]]:
        running = {r.recording_id for r in self.app[RECORDINGS].active.values()}
        async with self.app[keys.DB].session() as s:
            rows = (await s.exec(select(Recording).where(
                col(Recording.started_at) < cutoff))).all()
        out = []
        for row in rows:
            ended = row.stopped_at or row.started_at
            if row.id in running or ended >= cutoff:
                continue
            folder = self.data_dir / "recordings" / str(row.meeting_id) / row.directory
            if not folder.is_dir():
                continue  # already deleted
            size, files = await asyncio.to_thread(tree_size, folder)
            await asyncio.to_thread(shutil.rmtree, folder)
            item = {"directory": row.directory, "recording_id": row.id, "bytes": size,
                    "files": files, "retention_days": days}
            await self._audit(row.meeting_id, RECORDING_DELETED, item)
            out.append({"meeting_id": row.meeting_id, "kind": RECORDING_DELETED, **item})
        return out

    async def _archives(self, cutoff: datetime, days: int) -> list[dict[str, Any]]:
        root = self.data_dir / "archives"
        found = await asyncio.to_thread(_old_files, root, cutoff.timestamp())
        out = []
        for meeting_id, path, size in found:
            path.unlink(missing_ok=True)
            item = {"file": path.name, "bytes": size, "retention_days": days}
            await self._audit(meeting_id, ARCHIVE_DELETED, item)
            out.append({"meeting_id": meeting_id, "kind": ARCHIVE_DELETED, **item})
        return out

    async def _audit(self, meeting_id: int, kind: str, data: dict[str, Any]) -> None:
        logger.info("retention: meeting %s %s %s", meeting_id, kind, data)
        async with self.app[keys.DB].session() as s:
            if await s.get(Meeting, meeting_id) is None:
                return  # the meeting itself is gone: nothing to chain onto
            await audit.record(s, meeting_id, None, kind, data)
            await s.commit()

    async def run(self, _app: web.Application) -> AsyncIterator[None]:
        """The periodic sweep, as a lifespan (every `retention_interval_s`)."""
        task = asyncio.create_task(self._loop())
        yield
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def _loop(self) -> None:
        interval = self.app[keys.SETTINGS].retention_interval_s
        while True:
            await asyncio.sleep(interval)
            try:
                await self.sweep()
            except Exception:  # the next sweep tries again
                logger.exception("retention sweep failed")

    async def usage(self) -> dict[str, Any]:
        """Disk use per meeting (recordings, archive files, documents) and of the disk."""
        settings = self.app[keys.SETTINGS]
        rec_root, arc_root = self.data_dir / "recordings", self.data_dir / "archives"
        sizes = await asyncio.to_thread(_per_meeting, [rec_root, arc_root])
        async with self.app[keys.DB].session() as s:
            docs = dict((await s.exec(
                select(Document.meeting_id, func.sum(DocumentVersion.size))
                .join(DocumentVersion, col(DocumentVersion.document_id) == col(Document.id))
                .group_by(col(Document.meeting_id)))).all())
            ids = set(docs) | {m for m, _ in sizes}
            titles = dict((await s.exec(select(Meeting.id, Meeting.title).where(
                col(Meeting.id).in_(ids)))).all()) if ids else {}
        meetings = []
        for meeting_id in sorted(ids):
            rec = sizes.get((meeting_id, rec_root.name), 0)
            arc = sizes.get((meeting_id, arc_root.name), 0)
            doc = int(docs.get(meeting_id) or 0)
            meetings.append({"meeting_id": meeting_id, "title": titles.get(meeting_id),
                             "recordings_bytes": rec, "archives_bytes": arc,
                             "documents_bytes": doc, "total_bytes": rec + arc + doc})
        disk = shutil.disk_usage(_existing(self.data_dir))
        return {"disk": {"total_bytes": disk.total, "free_bytes": disk.free},
                "retention": {"recording_days": settings.recording_retention_days,
                              "archive_days": settings.archive_retention_days,
                              "recording_min_free_mb": settings.recording_min_free_mb},
                "meetings": sorted(meetings, key=lambda m: -m["total_bytes"])}


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _per_meeting(roots: list[Path]) -> dict[Any, int]:
    """{(meeting_id, root name): bytes} for `<root>/<meeting id>/…`."""
    out: dict[Any, int] = {}
    for root in roots:
        if not root.is_dir():
            continue
        for folder in root.iterdir():
            if folder.is_dir() and folder.name.isdigit():
                out[(int(folder.name), root.name)] = tree_size(folder)[0]
    return out


def _old_files(root: Path, cutoff: float) -> list[tuple[int, Path, int]]:
    found = []
    if root.is_dir():
        for folder in root.iterdir():
            if not (folder.is_dir() and folder.name.isdigit()):
                continue
            for path in folder.iterdir():
                if path.is_file() and path.suffix in (".zip", ".mp4"):
                    stat = path.stat()
                    if stat.st_mtime < cutoff:
                        found.append((int(folder.name), path, stat.st_size))
    return found
