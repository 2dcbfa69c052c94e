"""The archive and composite-video jobs of this process: what each requester asked for, how
far it is, and its result. Progress goes to the requester's sockets (`archive:progress` to
`user:<id>`) at most every PROGRESS_EVERY_S and at each change of state, and is read back
with `GET /api/archive/jobs/{id}`.

Jobs are in memory: a restart forgets them (the files they finished stay, listed by
`GET /api/meetings/{id}/archives`), and a job is read only in the process that runs it.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from rooms.errors import Conflict, NotFound

logger = logging.getLogger(__name__)

PROGRESS_EVERY_S = 0.5
KEEP_FINISHED = 200  # finished jobs remembered (oldest forgotten first)


@dataclass
class Job:
    id: str
    kind: str  # archive | composite
    meeting_id: int
    user_id: int
    state: str = "queued"  # queued | running | done | failed
    progress: float = 0.0  # 0..1
    message: str = ""  # what failed, in one line; or what the result lacks
    file: str | None = None  # its name in the meeting's archive folder, once done
    size: int | None = None
    sha256: str | None = None
    notes: list[str] = field(default_factory=list)  # e.g. "no timeline: single camera"
    started: float = field(default_factory=time.monotonic)
    _pushed: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "meeting_id": self.meeting_id,
                "state": self.state, "progress": round(self.progress, 3),
                "message": self.message, "file": self.file, "size": self.size,
                "sha256": self.sha256, "notes": self.notes,
                "url": (f"/api/meetings/{self.meeting_id}/archives/{self.file}"
                        if self.file else None)}


Push = Callable[[Job], Awaitable[None]]


class Jobs:
    def __init__(self, push: Push) -> None:
        self._push = push
        self._jobs: dict[str, Job] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def get(self, job_id: str, user_id: int) -> Job:
        job = self._jobs.get(job_id)
        if job is None or job.user_id != user_id:  # another's job is not revealed
            raise NotFound("no such job")
        return job

    def running(self, meeting_id: int | None = None) -> list[Job]:
        return [j for j in self._jobs.values() if j.state in ("queued", "running")
                and (meeting_id is None or j.meeting_id == meeting_id)]

    def start(self, kind: str, meeting_id: int, user_id: int,
              work: Callable[[Job], Awaitable[None]]) -> Job:
        """Run `work(job)` in the background; one job of a kind per meeting at a time."""
        if any(j.kind == kind for j in self.running(meeting_id)):
            raise Conflict(f"a {kind} of this meeting is already being made", code="busy")
        job = Job(secrets.token_urlsafe(12), kind, meeting_id, user_id)
        self._jobs[job.id] = job
        task = asyncio.create_task(self._run(job, work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    async def _run(self, job: Job, work: Callable[[Job], Awaitable[None]]) -> None:
        job.state = "running"
        await self.report(job, force=True)
        try:
            await work(job)
            job.state, job.progress = "done", 1.0
        except asyncio.CancelledError:
            job.state, job.message = "failed", "the server stopped"
            raise
        except JobFailed as exc:
            job.state, job.message = "failed", str(exc)
            logger.warning("%s of meeting %s failed: %s", job.kind, job.meeting_id, exc)
        except Exception as exc:  # logged with its traceback; the requester gets one line
            job.state, job.message = "failed", f"{type(exc).__name__}: {exc}".splitlines()[0]
            logger.exception("%s of meeting %s failed", job.kind, job.meeting_id)
        finally:
            self._forget_old()
            await self.report(job, force=True)

    async def report(self, job: Job, progress: float | None = None, force: bool = False) -> None:
        if progress is not None:
            job.progress = max(job.progress, min(1.0, progress))
        now = time.monotonic()
        if not force and now - job._pushed < PROGRESS_EVERY_S:
            return
        job._pushed = now
        try:
            await self._push(job)
        except Exception:  # the requester left: the job goes on
            logger.debug("archive progress not pushed", exc_info=True)

    def _forget_old(self) -> None:
        finished = [j for j in self._jobs.values() if j.state in ("done", "failed")]
        for old in sorted(finished, key=lambda j: j.started)[:-KEEP_FINISHED]:
            self._jobs.pop(old.id, None)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class JobFailed(Exception):
    """A job ended with a clear result for the requester (disk full, ffmpeg failed, ...)."""
