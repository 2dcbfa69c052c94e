"""Upload processing pipeline: validate → (convert) → inspect → render → ready.

``process_document`` orchestrates jobs (documents.jobs, documents.sanitize)
on a WorkerPool and reports progress. Page 1 is rendered before anything
else so it is viewable almost immediately; the remaining pages, the search
text and the sanitised copy follow in parallel, at most ``pool.size`` jobs
in flight per document so several uploads share the pool fairly.

Every image of a page (render, thumbnail, placeholder) is made by a worker,
sized by raster.fit: nothing here allocates pixels, whatever the page says.
Files a job writes go under temporary names the pool removes if the job dies.

Policy: a page that fails or times out gets a placeholder image and a
warning, never failing the document, unless more than
``limits.max_failed_pages`` pages fail (then: rejected, "too_complex", so one
pathological upload cannot occupy the workers for hours).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from documents import jobs, office, raster
from documents.errors import DocumentRejected, DocumentWarning, RejectCode, WarningCode
from documents.jobs import Inspection, OutlineEntry, PageRaster, PageSize
from documents.validation import FileKind, Limits, sniff_file
from documents.worker_pool import (
    PRIORITY_HIGH,
    PRIORITY_LOW,
    PRIORITY_NORMAL,
    JobTimeout,
    PoolClosed,
    WorkerCrashed,
    WorkerPool,
)

log = logging.getLogger(__name__)


class Stage(StrEnum):
    VALIDATING = "validating"
    CONVERTING = "converting"
    RENDERING = "rendering"
    READY = "ready"
    READY_WITH_WARNINGS = "ready_with_warnings"
    REJECTED = "rejected"


@dataclass(frozen=True)
class ProgressEvent:
    stage: Stage
    done: int = 0  # pages rendered so far
    total: int = 0  # page count, once known
    page_index: int | None = None  # the page that just became viewable (0-based)
    code: str | None = None  # rejection code (stable), with the messages below
    message_en: str = ""
    message_vi: str = ""
    warnings: tuple[DocumentWarning, ...] = ()


ProgressCallback = Callable[[ProgressEvent], Awaitable[None] | None]


@dataclass
class ProcessedDocument:
    status: Stage  # READY or READY_WITH_WARNINGS
    page_count: int
    page_sizes: list[PageSize]  # points
    outline: list[OutlineEntry]
    page_texts: list[str]
    warnings: list[DocumentWarning]
    source_pdf: Path  # what was rendered: the blob, or the converted PDF
    sanitized_pdf: Path | None  # copy for distribution; None if sanitising failed
    rasters: list[Path]  # per page JPEG at limits.raster_width
    thumbnails: list[Path]
    raster_sizes: list[tuple[int, int]]  # pixel size per raster
    placeholder_pages: list[int]  # pages whose raster is a placeholder
    converted_from: FileKind | None = None
    sanitize_removed: dict[str, int] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)  # seconds since start


async def process_document(
    pool: WorkerPool,
    blob_path: Path | str,
    out_dir: Path | str,
    limits: Limits | None = None,
    progress_cb: ProgressCallback | None = None,
    *,
    jobs_in_flight: int | None = None,
    pages_priority: int = PRIORITY_NORMAL,
) -> ProcessedDocument:
    """Process one upload. Raises DocumentRejected (after a REJECTED event).

    ``jobs_in_flight``: at most that many of its jobs at once (default: the pool's size);
    ``pages_priority``: the queue priority of pages 2 onwards (page 1 is always first, at
    PRIORITY_HIGH). A cascade mirror processes a document it already shows page 1 of with
    one job at a time at PRIORITY_LOW: a bulk job there never holds a worker a tablet's
    page view waits for, and 16 nodes on one machine do not run 32 workers at once."""
    run = _Run(pool, Path(blob_path), Path(out_dir), limits or Limits(), progress_cb,
               jobs_in_flight or pool.size, pages_priority)
    try:
        result = await run.execute()
    except DocumentRejected as exc:
        await run.emit(Stage.REJECTED, code=str(exc.code),
                       message_en=exc.message_en, message_vi=exc.message_vi)  # fmt: skip
        raise
    except (PoolClosed, asyncio.CancelledError):
        raise  # shutting down or upload withdrawn: not the document's fault
    except Exception as exc:
        log.exception("processing %s failed", blob_path)
        rejected = DocumentRejected(RejectCode.INTERNAL, repr(exc))
        await run.emit(Stage.REJECTED, code=str(rejected.code),
                       message_en=rejected.message_en, message_vi=rejected.message_vi)  # fmt: skip
        raise rejected from exc
    await run.emit(result.status, done=result.page_count, total=result.page_count,
                   warnings=tuple(result.warnings))  # fmt: skip
    return result


class _Run:
    """State of one process_document call."""

    def __init__(
        self, pool: WorkerPool, blob: Path, out_dir: Path, limits: Limits,
        progress_cb: ProgressCallback | None, jobs_in_flight: int, pages_priority: int,
    ) -> None:  # fmt: skip
        self.pool, self.blob, self.out_dir, self.limits = pool, blob, out_dir, limits
        self.pages_priority = pages_priority
        self.progress_cb = progress_cb
        self.spec = raster.RasterSpec(
            limits.raster_width, limits.jpeg_quality, limits.max_raster_height,
            limits.max_raster_pixels, limits.max_aspect,
        )  # fmt: skip
        self.warnings: list[DocumentWarning] = []
        self.started = time.monotonic()
        self.timings: dict[str, float] = {}
        self.slots = asyncio.Semaphore(max(1, jobs_in_flight))
        self.pages_done = 0
        self.failed_pages: list[int] = []
        self.info: Inspection | None = None
        self.results: dict[int, PageRaster] = {}

    async def emit(self, stage: Stage, **fields: Any) -> None:
        if self.progress_cb is None:
            return
        try:
            outcome = self.progress_cb(ProgressEvent(stage, **fields))
            if inspect.isawaitable(outcome):
                await outcome
        except Exception:  # a broken UI channel must not break processing
            log.exception("progress callback failed")

    def mark(self, name: str) -> None:
        self.timings[name] = round(time.monotonic() - self.started, 4)

    async def execute(self) -> ProcessedDocument:
        await self.emit(Stage.VALIDATING)
        kind = await asyncio.to_thread(sniff_file, self.blob, self.limits)
        pdf = self.blob
        if kind.is_office:
            await self._check_container(kind)
            await self.emit(Stage.CONVERTING)
            pdf = await office.convert_to_pdf(
                self.blob, kind, self.out_dir / "converted.pdf", self.limits.convert_timeout,
                allow_unsandboxed=self.limits.office_without_sandbox,
            )
            await asyncio.to_thread(sniff_file, pdf, self.limits)
        deadline = asyncio.timeout(self.limits.document_timeout)
        try:
            async with deadline:
                return await self._process_pdf(pdf, None if kind is FileKind.PDF else kind)
        except TimeoutError:
            if deadline.expired():
                raise DocumentRejected(RejectCode.TIMEOUT, "document deadline") from None
            raise

    async def _check_container(self, kind: FileKind) -> None:
        """The container must really be what its magic bytes claim (documents.containers)."""
        from documents import containers  # olefile: imported at the first Office upload

        try:
            await self._job(containers.check_office_container, str(self.blob), kind.value,
                            timeout=self.limits.inspect_timeout, priority=PRIORITY_HIGH)
        except (DocumentRejected, PoolClosed):
            raise
        except Exception as exc:  # timeout, crash, memory cap: only the file can cause them
            raise DocumentRejected(RejectCode.DAMAGED, f"container check: {exc!r}"[:500]) from None

    async def _process_pdf(self, pdf: Path, converted_from: FileKind | None) -> ProcessedDocument:
        info = self.info = await self._inspect(pdf)
        self._document_warnings(info)
        n = info.page_count
        await self.emit(Stage.RENDERING, done=0, total=n)
        await self._render(pdf, 0, PRIORITY_HIGH)  # first page first: viewable ASAP
        self.mark("first_page")
        tasks: list[asyncio.Task[Any]] = [asyncio.create_task(self._sanitize(pdf))]
        tasks += [asyncio.create_task(self._render(pdf, i, self.pages_priority))
                  for i in range(1, n)]
        step = max(1, self.limits.text_chunk_pages)
        tasks += [asyncio.create_task(self._texts(pdf, list(range(s, min(n, s + step)))))
                  for s in range(0, n, step)]  # fmt: skip
        results = await _gather_or_cancel(tasks)
        sanitized, removed = results[0]
        texts: dict[int, str] = {}
        for chunk in results[n:]:
            texts.update(chunk)
        self.mark("ready")
        return self._result(pdf, converted_from, sanitized, removed, texts)

    async def _job(self, func: Callable[..., Any], *args: Any, timeout: float,
                   priority: int = PRIORITY_NORMAL, cleanup: tuple[str, ...] = ()) -> Any:  # fmt: skip
        async with self.slots:
            return await self.pool.run(func, *args, timeout=timeout, priority=priority,
                                       cleanup=cleanup)  # fmt: skip

    async def _inspect(self, pdf: Path) -> Inspection:
        try:
            info: Inspection = await self._job(
                jobs.inspect_pdf, str(pdf), self.limits.max_pages, self.limits.max_outline_entries,
                timeout=self.limits.inspect_timeout, priority=PRIORITY_HIGH,
            )  # fmt: skip
            return info
        except (DocumentRejected, PoolClosed):
            raise
        except JobTimeout:
            raise DocumentRejected(RejectCode.TIMEOUT, "inspect timed out") from None
        except MemoryError:
            raise DocumentRejected(RejectCode.TOO_COMPLEX, "inspect ran out of memory") from None
        except WorkerCrashed as exc:
            raise DocumentRejected(RejectCode.DAMAGED, f"reader crashed: {exc}") from None
        except Exception as exc:  # inspecting only reads the file: its failure is the file's
            raise DocumentRejected(RejectCode.DAMAGED, f"inspect failed: {exc!r}"[:500]) from None

    def _document_warnings(self, info: Inspection) -> None:
        if info.repaired:
            self.warnings.append(
                DocumentWarning.make(WarningCode.REPAIRED, detail=info.mupdf_warnings[:2000])
            )
        for i, size in enumerate(info.page_sizes):
            if max(size.width, size.height) > self.limits.oversized_page_pt:
                self.warnings.append(DocumentWarning.make(
                    WarningCode.PAGE_OVERSIZED, i, width_mm=_mm(size.width),
                    height_mm=_mm(size.height),
                ))  # fmt: skip

    def _paths(self, i: int) -> tuple[Path, Path]:
        return self.out_dir / "pages" / f"{i:04d}.jpg", self.out_dir / "thumbs" / f"{i:04d}.jpg"

    def _temps(self, i: int) -> tuple[str, tuple[str, ...]]:
        """A fresh tag for page ``i``'s job and the temporary files it may leave."""
        tag = uuid.uuid4().hex
        return tag, tuple(raster.temp_for(p, tag) for p in self._paths(i))

    async def _render(self, pdf: Path, i: int, priority: int) -> None:
        page_path, thumb_path = self._paths(i)
        tag, temps = self._temps(i)
        try:
            result: PageRaster = await self._job(
                jobs.render_page, str(pdf), i, str(page_path), str(thumb_path), self.spec,
                self.limits.thumb_width, self.limits.thumb_quality, tag,
                timeout=self.limits.page_timeout, priority=priority, cleanup=temps,
            )  # fmt: skip
            self.results[i] = result
            if result.reshaped:
                size = self.info.page_sizes[i] if self.info else None
                self.warnings.append(DocumentWarning.make(
                    WarningCode.PAGE_RESHAPED, i, width_mm=_mm(size.width if size else 0),
                    height_mm=_mm(size.height if size else 0)))  # fmt: skip
            elif result.downscaled:
                self.warnings.append(DocumentWarning.make(WarningCode.PAGE_DOWNSCALED, i))
        except (PoolClosed, DocumentRejected):
            raise
        except Exception as exc:
            await self._page_failed(i, exc)
        self.pages_done += 1
        await self.emit(Stage.RENDERING, done=self.pages_done,
                        total=self._page_count(), page_index=i)  # fmt: skip

    def _page_count(self) -> int:
        return self.info.page_count if self.info else 0

    async def _page_failed(self, i: int, exc: BaseException) -> None:
        code = WarningCode.PAGE_TIMEOUT if isinstance(exc, JobTimeout) else WarningCode.PAGE_FAILED
        self.warnings.append(DocumentWarning.make(code, i, detail=repr(exc)[:500]))
        self.failed_pages.append(i)
        if len(self.failed_pages) > self.limits.max_failed_pages:
            raise DocumentRejected(RejectCode.TOO_COMPLEX, failed=len(self.failed_pages))
        size = self.info.page_sizes[i] if self.info else PageSize(*raster.A4_PT)
        page_path, thumb_path = self._paths(i)
        tag, temps = self._temps(i)
        try:  # in a worker too: the page's size is the file's to choose
            await self._job(
                jobs.write_placeholder, str(page_path), str(thumb_path), size.width, size.height,
                self.spec, self.limits.thumb_width, tag,
                timeout=raster.PLACEHOLDER_TIMEOUT, priority=PRIORITY_HIGH, cleanup=temps,
            )  # fmt: skip
        except (PoolClosed, DocumentRejected):
            raise
        except Exception as err:  # the page view route renders (or stands in) on demand
            log.warning("placeholder for page %d of %s failed: %r", i, self.blob, err)

    async def _texts(self, pdf: Path, pages: list[int]) -> dict[int, str]:
        try:
            texts, failed = await self._job(
                jobs.extract_text, str(pdf), pages,
                timeout=self.limits.text_timeout, priority=PRIORITY_LOW,
            )  # fmt: skip
        except (PoolClosed, DocumentRejected):
            raise
        except Exception as exc:
            texts, failed = {i: "" for i in pages}, pages
            log.warning("text extraction failed for pages %s: %r", pages, exc)
        if failed:
            self.warnings.append(
                DocumentWarning.make(WarningCode.TEXT_UNAVAILABLE, pages=_page_ranges(failed))
            )
        return dict(texts)

    async def _sanitize(self, pdf: Path) -> tuple[Path | None, dict[str, int]]:
        from documents import sanitize  # pikepdf and PyMuPDF: imported at the first upload

        dst = self.out_dir / "document.pdf"
        tag = uuid.uuid4().hex
        try:
            report: sanitize.SanitizeReport = await self._job(
                sanitize.sanitize_pdf, str(pdf), str(dst), tag,
                timeout=self.limits.sanitize_timeout, priority=PRIORITY_LOW,
                cleanup=sanitize.temp_paths(str(dst), tag),
            )  # fmt: skip
        except (PoolClosed, DocumentRejected):
            raise
        except Exception as exc:
            self.warnings.append(DocumentWarning.make(WarningCode.SANITIZE_FAILED, detail=repr(exc)))
            return None, {}
        if report.changed:
            items = ", ".join(f"{k}: {v}" for k, v in sorted(report.removed.items()))
            self.warnings.append(
                DocumentWarning.make(WarningCode.ACTIVE_CONTENT_REMOVED, items=items)
            )
        return dst, report.removed

    def _result(
        self, pdf: Path, converted_from: FileKind | None, sanitized: Path | None,
        removed: dict[str, int], texts: dict[int, str],
    ) -> ProcessedDocument:  # fmt: skip
        assert self.info is not None
        n = self.info.page_count
        paths = [self._paths(i) for i in range(n)]
        sizes = [
            (self.results[i].width_px, self.results[i].height_px) if i in self.results else (0, 0)
            for i in range(n)
        ]
        warnings = sorted(self.warnings, key=lambda w: (w.page_index is not None, w.page_index or 0))
        status = Stage.READY_WITH_WARNINGS if warnings else Stage.READY
        return ProcessedDocument(
            status, n, self.info.page_sizes, self.info.outline,
            [texts.get(i, "") for i in range(n)], warnings, pdf, sanitized,
            [p for p, _ in paths], [t for _, t in paths], sizes, sorted(self.failed_pages),
            converted_from, removed, self.info.metadata, self.timings,
        )  # fmt: skip


async def _gather_or_cancel(tasks: list[asyncio.Task[Any]]) -> list[Any]:
    """Like gather, but the first exception cancels the siblings (kills their jobs)."""
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _mm(points: float) -> int:
    return round(points * 25.4 / 72) if math.isfinite(points) and abs(points) < 1e12 else 0


def _page_ranges(pages: list[int]) -> str:
    """[0, 1, 2, 5] -> '1–3, 6' (1-based, for people)."""
    out: list[str] = []
    for p in sorted(pages):
        if out and out[-1].split("–")[-1] == str(p):
            head = out[-1].split("–")[0]
            out[-1] = f"{head}–{p + 1}"
        else:
            out.append(str(p + 1))
    return ", ".join(out)
