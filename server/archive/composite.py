"""The composite MP4 of one recording, made after the meeting by ffmpeg in its own process,
never in the server's (the forwarding) process: niced, with an address-space and a CPU-time
limit (setrlimit in the child) and a wall-clock limit (killed past it, its whole process
group). ffmpeg's `-progress` output becomes the job's progress. The file is written as
`<name>.partial` and renamed when ffmpeg succeeded; a failure leaves nothing under the name.

Pages are rendered by the documents' worker pool (sandboxed, like every page render) and
letterboxed to one size here, so the ffconcat slideshow has one picture size throughout.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import resource
import shutil
import signal
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from documents import raster, render
from documents.db_models import DocumentVersion
from documents.worker_pool import WorkerPool
from server.archive import composite_plan
from server.archive.composite_plan import Layout, Track
from server.archive.jobs import JobFailed

logger = logging.getLogger(__name__)


@dataclass
class CompositeLimits:
    width: int = 1280
    height: int = 720
    memory_mb: int = 1536  # RLIMIT_AS of the ffmpeg process
    nice: int = 10
    cpu_s_per_s: float = 6.0  # RLIMIT_CPU: this many CPU seconds per second of video (+60)
    wall_s_per_s: float = 4.0  # killed past this many seconds per second of video
    wall_min_s: float = 60.0  # ... plus this
    threads: int = 2


async def probe(path: Path) -> tuple[float, float]:
    """(start_time, duration) of a media file, in seconds (0, 0 when unknown)."""
    proc = await asyncio.create_subprocess_exec(
        "ffprobe", "-v", "error", "-show_entries", "format=start_time,duration", "-of", "json",
        str(path), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    try:
        fmt = json.loads(out or b"{}").get("format", {})
        return float(fmt.get("start_time") or 0), float(fmt.get("duration") or 0)
    except (ValueError, TypeError):
        return 0.0, 0.0


async def tracks_of(folder: Path, entries: list[dict[str, Any]]) -> list[Track]:
    """The recording's track files with whose they are (from the timeline's `track`
    entries when present) and where each begins."""
    about = {e["data"].get("file"): e for e in entries if e["kind"] == "track"}
    found: list[Track] = []
    for path in sorted(folder.glob("*")):
        if path.suffix not in (".webm", ".ts", ".mkv") or not path.is_file():
            continue
        entry = about.get(path.name)
        start, duration = await probe(path)
        if duration <= 0:
            continue  # empty or unreadable: nothing to show
        if entry is not None:
            data = entry["data"]
            kind, source, user = data.get("kind"), data.get("source") or "", data.get("user_id")
            start = start or entry["offset_ms"] / 1000
        else:  # no timeline: guess the kind from the file's name (media/recorder.py)
            kind = "audio" if "audio" in path.name else "video"
            source, user = ("screen" if "screen" in path.name else "camera"), None
        found.append(Track(path, str(kind), str(source), user, start))
    return found


def letterbox(jpeg: bytes, size: tuple[int, int], out: Path) -> None:
    from PIL import Image  # here, not at start: only a composite recording uses it

    with Image.open(io.BytesIO(jpeg)) as opened:
        img = opened.convert("RGB")
        img.thumbnail(size)
        canvas = Image.new("RGB", size, (30, 30, 30))
        canvas.paste(img, ((size[0] - img.width) // 2, (size[1] - img.height) // 2))
        canvas.save(out, "JPEG", quality=85)


def blank(size: tuple[int, int], out: Path) -> None:
    from PIL import Image

    Image.new("RGB", size, (30, 30, 30)).save(out, "JPEG", quality=85)


async def page_images(pool: WorkerPool, documents_root: Path,
                      versions: dict[tuple[int, int], DocumentVersion],
                      keys: set[tuple[int, int, int]], size: tuple[int, int], work: Path,
                      watermark: Callable[[int], list[str]]) -> dict[tuple[int, int, int], Path]:
    """Each (document, version, page) shown, rendered to `size` (a confidential document's
    pages watermarked by `watermark(document_id)`); pages that cannot be rendered are left
    out (the blank page shows instead)."""
    images: dict[tuple[int, int, int], Path] = {}
    for doc_id, number, page in sorted(keys):
        v = versions.get((doc_id, number))
        if v is None or not v.has_safe_copy:
            continue
        pdf = documents_root / "derived" / v.sha256[:2] / v.sha256[2:4] / v.sha256 / \
            "default" / "document.pdf"
        try:
            shot = await pool.run(render.render_page_jpeg, str(pdf), page,
                                  raster.RasterSpec(width=max(size[0] * 2, 320)),
                                  watermark(doc_id), timeout=60)
        except Exception as exc:  # noqa: BLE001 - one bad page: the blank shows for it
            logger.warning("composite: page %s of document %s v%s not rendered: %s",
                           page, doc_id, number, exc)
            continue
        out = work / f"page-{doc_id}-{number}-{page}.jpg"
        await asyncio.to_thread(letterbox, shot.jpeg, size, out)
        images[(doc_id, number, page)] = out
    return images


def _limits(limits: CompositeLimits, cpu_s: int) -> Callable[[], None]:
    def apply() -> None:  # in the child, before exec
        os.nice(limits.nice)
        memory = limits.memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 5))
    return apply


async def run_ffmpeg(plan: Layout, work: Path, target: Path, limits: CompositeLimits,
                     progress: Callable[[float], Awaitable[None]]) -> None:
    """ffmpeg makes `target`; JobFailed with what went wrong otherwise."""
    if shutil.which("ffmpeg") is None:
        raise JobFailed("ffmpeg is not installed (scripts/setup.sh installs it)")
    concat = work / "pages.ffconcat"
    concat.write_text(composite_plan.concat_list(plan.pages), encoding="utf-8")
    partial = target.with_name(target.name + ".partial")
    argv = composite_plan.command(plan, concat, partial, threads=limits.threads)
    wall = limits.wall_min_s + plan.duration_s * limits.wall_s_per_s
    cpu = int(60 + plan.duration_s * limits.cpu_s_per_s)
    with tempfile.TemporaryFile() as errors:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=errors, start_new_session=True,
            preexec_fn=_limits(limits, cpu))

        async def read_progress() -> None:
            assert proc.stdout is not None
            while line := await proc.stdout.readline():
                key, _, value = line.decode(errors="replace").strip().partition("=")
                if key == "out_time_us" and value.isdigit() and plan.duration_s > 0:
                    await progress(int(value) / 1e6 / plan.duration_s)
        try:
            await asyncio.wait_for(asyncio.gather(read_progress(), proc.wait()), wall)
        except TimeoutError:
            _kill(proc)
            await proc.wait()
            partial.unlink(missing_ok=True)
            raise JobFailed(f"ffmpeg took longer than {wall:.0f} s: stopped") from None
        except BaseException:
            _kill(proc)
            partial.unlink(missing_ok=True)
            raise
        errors.seek(0)
        message = errors.read()[-2000:].decode(errors="replace").strip()
    if proc.returncode != 0:
        partial.unlink(missing_ok=True)
        why = _why(proc.returncode, message)
        logger.error("composite %s: ffmpeg failed: %s", target.name, why)
        raise JobFailed(f"ffmpeg failed: {why}")
    os.replace(partial, target)


def _why(code: int | None, message: str) -> str:
    if code is not None and code < 0:
        names = {int(signal.SIGXCPU): "over its CPU-time limit", int(signal.SIGKILL): "killed",
                 int(signal.SIGSEGV): "crashed (memory limit?)"}
        return names.get(-code, f"signal {-code}")
    last = message.splitlines()[-1] if message else f"exit status {code}"
    if "No space left" in message:
        return "the disk is full"
    return last[:300]


def _kill(proc: asyncio.subprocess.Process) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
