"""Mutated-PDF fuzzing through the real processing pipeline, for a bounded time.

Every damaged file (tests/documents/mutate.py: truncation, bit flips, xref/trailer damage,
huge numbers, deep nesting, bogus object streams, ...) must end ready, ready with warnings
or cleanly rejected: never internal_error, never a logged traceback, never a temporary file
left, every image within the pixel caps; the workers are recycled as they go and this
(web-side) process's memory stays flat. Files that once broken a rule are kept in
tests/documents/pdf_crashers/ and replayed first.

Longer or other runs: HOPSO_PDF_FUZZ_SECONDS (default 20), HOPSO_PDF_FUZZ_SEED.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest
import pytest_asyncio
from PIL import Image

from documents.errors import DocumentRejected, RejectCode
from documents.processing import Stage, process_document
from documents.validation import Limits
from documents.worker_pool import WorkerPool
from tests.documents import mutate
from tests.documents.test_worker_pool import add, refilled

module_loop = pytest.mark.asyncio(loop_scope="module")

SECONDS = float(os.environ.get("HOPSO_PDF_FUZZ_SECONDS", "20"))
SEED = int(os.environ.get("HOPSO_PDF_FUZZ_SEED", "20261206"))
CRASHERS = Path(__file__).with_name("pdf_crashers")
LIMITS = Limits(page_timeout=2.0, inspect_timeout=5.0, text_timeout=5.0, sanitize_timeout=5.0,
                document_timeout=30.0, max_failed_pages=3, allow_office=False)
RSS_GROWTH_LIMIT = 64 << 20


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def pool() -> AsyncIterator[WorkerPool]:
    # Recycled every 20 jobs, so the run also exercises worker turnover.
    async with WorkerPool(size=2, max_jobs_per_worker=20) as p:
        yield p


class ErrorLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def problems_with(pool: WorkerPool, data: bytes, work: Path) -> list[str]:
    """Process ``data`` as an upload; what went wrong, if anything."""
    work.mkdir(parents=True)
    src = work / "upload.pdf"
    src.write_bytes(data)
    errors = ErrorLog()
    logging.getLogger().addHandler(errors)
    found = []
    try:
        result = await process_document(pool, src, work / "out", LIMITS)
    except DocumentRejected as exc:
        if exc.code is RejectCode.INTERNAL:
            found.append(f"internal_error: {exc.detail}")
    except Exception as exc:  # noqa: BLE001 - anything escaping is the bug under test
        found.append(f"escaped: {exc!r}")
    else:
        assert result.status in (Stage.READY, Stage.READY_WITH_WARNINGS)
        for path in result.rasters:
            if path.exists():
                with Image.open(path) as img:
                    w, h = img.size
                if w > LIMITS.raster_width or h > LIMITS.max_raster_height:
                    found.append(f"raster {w}x{h} beyond the caps")
    finally:
        logging.getLogger().removeHandler(errors)
    found += [f"logged {r.levelname}: {r.getMessage()[:300]}" for r in errors.records]
    found += [f"left {p.name}" for p in work.rglob("*.tmp-*")]
    return found


class PeakRss:
    """This process's peak RSS, sampled every 10 ms while running."""

    def __init__(self) -> None:
        self.process, self.peak, self._stop = psutil.Process(), 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            self._stop.wait(0.01)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


@module_loop
@pytest.mark.parametrize("crasher", sorted(p.name for p in CRASHERS.glob("*.pdf")))
async def test_kept_crashers_end_cleanly(crasher: str, pool: WorkerPool, tmp_path: Path) -> None:
    assert await problems_with(pool, (CRASHERS / crasher).read_bytes(), tmp_path / "w") == []


@module_loop
async def test_mutated_pdfs_end_ready_or_cleanly_rejected(pool: WorkerPool,
                                                          tmp_path: Path) -> None:
    seeds = mutate.seed_files(tmp_path / "seeds")
    await problems_with(pool, seeds["text"], tmp_path / "warm-up")  # first-use allocations
    baseline = psutil.Process().memory_info().rss
    recycled_before = pool.stats.recycled
    failures: dict[str, list[str]] = {}
    count = 0
    deadline = time.monotonic() + SECONDS
    with PeakRss() as rss:
        for count, mutant in enumerate(mutate.mutants(seeds, SEED), start=1):
            found = await problems_with(pool, mutant.data, tmp_path / f"m{count}")
            if found:
                failures[mutant.name] = found
                keep = tmp_path / "crashers" / f"{mutant.name.replace(':', '-').replace('/', '-')}.pdf"
                keep.parent.mkdir(exist_ok=True)
                keep.write_bytes(mutant.data)
            if time.monotonic() > deadline:
                break
    print(f"{count} mutants in {SECONDS:.0f} s (seed {SEED}), {pool.stats.recycled} recycles, "
          f"{pool.stats.timeouts} timeouts, {pool.stats.crashes} crashes")
    assert not failures, (f"{len(failures)} of {count} mutants broke a rule (kept in "
                          f"{tmp_path / 'crashers'}; copy them to {CRASHERS}): {failures}")
    assert count >= 10, f"only {count} mutants in {SECONDS}s"
    assert pool.stats.recycled > recycled_before and len(await refilled(pool)) == pool.size
    assert await pool.run(add, 2, 3) == 5
    growth = rss.peak - baseline
    assert growth < RSS_GROWTH_LIMIT, f"this process grew {growth >> 20} MB over {count} files"
