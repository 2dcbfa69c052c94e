"""Making a meeting's archive and its composite video, as jobs (server/archive/jobs.py).

Files go to `<data dir>/archives/<meeting id>/`: `hopso-meeting-<id>-<UTC time>.zip` and
`.mp4`; each finished one is audited in the meeting's chain (`archive_exported` with the
archive's and its manifest's SHA-256, `composite_made`), so the server's audit log names the
exact file it produced.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from sqlmodel import col, select

from documents import export_job
from documents.archive_format import ArchiveWriteError, Member, free_bytes, write_archive
from documents.db_models import Document, DocumentVersion
from rooms import audit, recording_log
from rooms.errors import Invalid, NotFound
from rooms.models import Unit, User
from server.archive import composite, composite_plan, gather
from server.archive.jobs import Job, JobFailed, Jobs
from server.core import keys
from server.core.realtime import user_room
from server.documents.keys import DOCUMENTS
from server.recording.keys import RECORDINGS

logger = logging.getLogger(__name__)

EXPORT_TIMEOUT_S = 180.0
SPARE_BYTES = 64 * 1024 * 1024  # free space kept beyond the archive's estimated size
ARCHIVED, COMPOSED = "archive_exported", "composite_made"  # audit kinds


def stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


class Archives:
    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.jobs = Jobs(self._push)
        self.limits = composite.CompositeLimits()
        self._composites = asyncio.Semaphore(1)  # one ffmpeg at a time per process

    @property
    def root(self) -> Path:
        return self.app[keys.SETTINGS].data_dir / "archives"

    def folder(self, meeting_id: int) -> Path:
        return self.root / str(meeting_id)

    async def _push(self, job: Job) -> None:
        await self.app[keys.SIO].emit("archive:progress", job.as_dict(),
                                      room=user_room(job.user_id))

    async def _watermark(self, user: User) -> list[str]:
        async with self.app[keys.DB].session() as s:
            unit = await s.get(Unit, user.unit_id) if user.unit_id else None
        zone = ZoneInfo(self.app[keys.SETTINGS].timezone)
        moment = datetime.now(zone).strftime("%d/%m/%Y %H:%M")
        who = " – ".join(p for p in (user.full_name, unit.name if unit else "") if p)
        return [f"Bản lưu trữ – {who} – {moment}"]

    # -- the archive ---------------------------------------------------------------------
    async def make_archive(self, job: Job, user: User) -> None:
        rt = self.app[DOCUMENTS]
        running = {r.recording_id for r in self.app[RECORDINGS].active.values()
                   if r.recording_id is not None}
        async with self.app[keys.DB].session() as s:
            plan = await gather.plan(s, job.meeting_id, self.app[keys.SETTINGS].data_dir,
                                     rt.store.root, running)
        folder = self.folder(job.meeting_id)
        work = Path(tempfile.mkdtemp(prefix=".work-", dir=_made(folder)))
        try:
            members = list(plan.members)
            lines = await self._watermark(user)
            for i, item in enumerate(plan.annotate):
                out = work / f"annotated-{i}.pdf"
                await rt.pool.run(export_job.export_to_file, str(item.source), item.annotations,
                                  False, lines if item.confidential else [], str(out),
                                  timeout=EXPORT_TIMEOUT_S, cleanup=(out,))
                members.append(Member(item.path, "annotated", source=out, about=item.about))
                await self.jobs.report(job, 0.3 * (i + 1) / len(plan.annotate))
            self._room_for(members, folder)
            header = {**plan.header, "created_at": datetime.now(UTC).isoformat(),
                      "created_by": {"id": user.id, "name": user.full_name},
                      "notes": plan.notes}
            target = folder / f"hopso-meeting-{job.meeting_id}-{stamp()}.zip"
            loop = asyncio.get_running_loop()

            def progress(done: int, total: int) -> None:  # in the writing thread
                loop.call_soon_threadsafe(lambda: asyncio.ensure_future(
                    self.jobs.report(job, 0.3 + 0.7 * done / total)))
            try:
                written = await asyncio.to_thread(write_archive, target, header, members,
                                                  progress)
            except ArchiveWriteError as exc:
                raise JobFailed(str(exc)) from None
        finally:
            shutil.rmtree(work, ignore_errors=True)
        async with self.app[keys.DB].session() as s:
            await audit.record(s, job.meeting_id, user.id, ARCHIVED, {
                "file": target.name, "size": written.size, "sha256": written.sha256,
                "manifest_sha256": written.manifest_sha256, "members": written.members})
            await s.commit()
        job.file, job.size, job.sha256, job.notes = target.name, written.size, \
            written.sha256, plan.notes

    def _room_for(self, members: list[Member], folder: Path) -> None:
        """Refuse at once when the archive cannot fit (the write would fail part-way)."""
        need = sum(m.source.stat().st_size if m.source is not None else len(m.data or b"")
                   for m in members) + SPARE_BYTES
        free = free_bytes(folder)
        if free < need:
            raise JobFailed(f"not enough disk space for the archive: it needs about "
                            f"{need // 2**20} MB, {free // 2**20} MB are free")

    # -- the composite video ---------------------------------------------------------------
    async def make_composite(self, job: Job, user: User, recording_id: int | None) -> None:
        settings = self.app[keys.SETTINGS]
        rt = self.app[DOCUMENTS]
        async with self.app[keys.DB].session() as s:
            rows = [r for r in await recording_log.recordings(s, job.meeting_id)
                    if r.stopped_at is not None]
            row = next((r for r in rows if r.id == recording_id), None) \
                if recording_id is not None else (rows[-1] if rows else None)
            if row is None:
                raise JobFailed("no finished recording to compose" if recording_id is None
                                else f"recording {recording_id} is not a finished recording "
                                     "of this meeting")
            entries = await recording_log.entries(s, row.id)  # type: ignore[arg-type]
            versions, confidential = await _versions(s, entries)
        folder_in = settings.data_dir / "recordings" / str(job.meeting_id) / row.directory
        tracks = await composite.tracks_of(folder_in, entries)
        if not tracks:
            raise JobFailed(f"recording {row.directory} has no playable track")
        stop = [e["offset_ms"] for e in entries if e["kind"] == "recording_stopped"]
        duration = stop[-1] / 1000 if stop else 0.0
        if duration <= 0:
            for t in tracks:
                _, length = await composite.probe(t.path)
                duration = max(duration, t.start_s + length)
        if not any(e["kind"] in ("floor", "presented") for e in entries):
            job.notes.append("the recording has no timeline: the first camera track "
                             "throughout, no pages")
        folder = self.folder(job.meeting_id)
        work = Path(tempfile.mkdtemp(prefix=".work-", dir=_made(folder)))
        try:
            lines = await self._watermark(user)
            keys_shown = {k for e in entries if e["kind"] == "presented"
                          and (k := composite_plan._page_key(e["data"])) is not None}
            size = composite_plan.Layout(self.limits.width, self.limits.height, 0).page_size
            images = await composite.page_images(
                rt.pool, rt.store.root, versions, keys_shown, size, work,
                lambda doc_id: lines if doc_id in confidential else [])
            empty = work / "blank.jpg"
            await asyncio.to_thread(composite.blank, size, empty)
            plan = composite_plan.layout(self.limits.width, self.limits.height, duration,
                                         tracks, entries, images, empty)
            job.notes += plan.notes
            target = folder / f"hopso-meeting-{job.meeting_id}-{row.directory}.mp4"

            async def progress(value: float) -> None:
                await self.jobs.report(job, value)
            async with self._composites:
                await composite.run_ffmpeg(plan, work, target, self.limits, progress)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        size_bytes = target.stat().st_size
        async with self.app[keys.DB].session() as s:
            await audit.record(s, job.meeting_id, user.id, COMPOSED, {
                "file": target.name, "size": size_bytes, "recording_id": row.id,
                "notes": job.notes})
            await s.commit()
        job.file, job.size = target.name, size_bytes

    def files(self, meeting_id: int) -> list[dict[str, Any]]:
        folder = self.folder(meeting_id)
        if not folder.is_dir():
            return []
        return [{"file": p.name, "size": p.stat().st_size,
                 "kind": "archive" if p.suffix == ".zip" else "composite",
                 "made_at": datetime.fromtimestamp(p.stat().st_mtime, UTC).isoformat(),
                 "url": f"/api/meetings/{meeting_id}/archives/{p.name}"}
                for p in sorted(folder.iterdir())
                if p.is_file() and p.suffix in (".zip", ".mp4")]

    def file(self, meeting_id: int, name: str) -> Path:
        if not _is_name(name):
            raise Invalid("not an archive file name")
        path = self.folder(meeting_id) / name
        if not path.is_file():
            raise NotFound("no such archive file")
        return path


def _is_name(name: str) -> bool:
    return (0 < len(name) <= 120 and name.endswith((".zip", ".mp4"))
            and all(c.isalnum() or c in "-_." for c in name) and not name.startswith("."))


def _made(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


async def _versions(s: Any, entries: list[dict[str, Any]]
                    ) -> tuple[dict[tuple[int, int], DocumentVersion], set[int]]:
    """The document versions the timeline shows, and which of those are confidential."""
    pairs = {(int(e["data"]["document_id"]), int(e["data"]["version"])) for e in entries
             if e["kind"] == "presented" and e["data"].get("active")
             and e["data"].get("document_id") is not None}
    if not pairs:
        return {}, set()
    rows = (await s.exec(select(DocumentVersion, Document.confidential)
                         .join(Document, col(Document.id) == col(DocumentVersion.document_id))
                         .where(col(DocumentVersion.document_id).in_({d for d, _ in pairs}))
                         )).all()
    found: dict[tuple[int, int], DocumentVersion] = {}
    secret: set[int] = set()
    for v, confidential in rows:
        if (v.document_id, v.number) in pairs:
            found[(v.document_id, v.number)] = v
            if confidential:
                secret.add(v.document_id)
    return found, secret
