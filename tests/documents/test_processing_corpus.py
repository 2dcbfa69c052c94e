"""Every hostile file ends 'rejected' or 'ready with warnings', in time, with a clear
bilingual message, and the pool still works afterwards."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from PIL import Image

from documents import office
from documents.errors import DocumentRejected, RejectCode, WarningCode
from documents.processing import ProgressEvent, Stage, process_document
from documents.validation import Limits
from documents.worker_pool import WorkerPool
from tests.documents import corpus
from tests.documents.test_worker_pool import add, refilled

module_loop = pytest.mark.asyncio(loop_scope="module")

PAGE_TIMEOUT = 3.0
LIMITS = Limits(
    page_timeout=PAGE_TIMEOUT, inspect_timeout=5.0, text_timeout=5.0, sanitize_timeout=5.0,
    document_timeout=30.0,
)  # fmt: skip


@dataclass(frozen=True)
class Case:
    make: Callable[[Path], Path]
    expect: RejectCode | WarningCode  # rejection code, or a warning the result must carry
    within: float  # seconds, generous for a loaded 2-core CI machine
    limits: Limits = LIMITS


def _empty(directory: Path) -> Path:
    path = directory / "empty.pdf"
    path.write_bytes(b"")
    return path


def _small_text(directory: Path) -> Path:
    return corpus.make_text_pdf(directory, pages=1)


CASES = {
    "truncated": Case(corpus.make_truncated_pdf, WarningCode.REPAIRED, 5),
    "garbage": Case(corpus.make_garbage, RejectCode.NOT_PDF, 2),
    "empty": Case(_empty, RejectCode.EMPTY, 2),
    "header_then_garbage": Case(corpus.make_fake_pdf_header_garbage, RejectCode.DAMAGED, 5),
    "encrypted": Case(corpus.make_encrypted_pdf, RejectCode.ENCRYPTED, 5),
    "huge_page_200in": Case(corpus.make_huge_page_pdf, WarningCode.PAGE_OVERSIZED, 8),
    "10000_pages": Case(corpus.make_many_pages_pdf, RejectCode.TOO_MANY_PAGES, 5),
    "too_large": Case(_small_text, RejectCode.TOO_LARGE, 2, Limits(max_bytes=1024)),
    "decompression_bomb": Case(
        corpus.make_decompression_bomb_pdf, WarningCode.PAGE_TIMEOUT, PAGE_TIMEOUT + 5
    ),
    "10k_thick_paths": Case(corpus.make_many_paths_pdf, WarningCode.PAGE_TIMEOUT, PAGE_TIMEOUT + 5),
    "javascript_and_attachments": Case(
        corpus.make_active_content_pdf, WarningCode.ACTIVE_CONTENT_REMOVED, 5
    ),
    "office_without_converter": Case(corpus.make_docx_like, RejectCode.CONVERSION_UNAVAILABLE, 2),
    "random_bytes_behind_ole_header": Case(corpus.make_ole_random, RejectCode.DAMAGED, 5),
    "page_count_minus_one": Case(corpus.make_invalid_page_count_pdf, RejectCode.DAMAGED, 5),
    "page_tree_cycle": Case(corpus.make_page_tree_cycle_pdf, RejectCode.DAMAGED, 5),
}


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def pool() -> AsyncIterator[WorkerPool]:
    async with WorkerPool(size=2) as p:
        yield p


@module_loop
@pytest.mark.parametrize("name", list(CASES))
async def test_hostile_file(
    name: str, pool: WorkerPool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(office, "find_converter", lambda: None)  # same result with or without LO
    case = CASES[name]
    path = case.make(tmp_path)
    events: list[ProgressEvent] = []
    started = time.monotonic()
    try:
        result = await process_document(pool, path, tmp_path / "out", case.limits, events.append)
    except DocumentRejected as exc:
        assert exc.code == case.expect, exc
        final = events[-1]
        assert final.stage is Stage.REJECTED and final.code == str(case.expect)
        assert final.message_en and final.message_vi and final.message_en != final.message_vi
    else:
        assert isinstance(case.expect, WarningCode), f"expected rejection {case.expect}"
        assert result.status is Stage.READY_WITH_WARNINGS
        assert case.expect in {w.code for w in result.warnings}
        assert all(w.message_en and w.message_vi for w in result.warnings)
        assert events[-1].stage is Stage.READY_WITH_WARNINGS and events[-1].warnings
        for raster_path in result.rasters:  # every page has an image, real or placeholder
            with Image.open(raster_path) as img:
                assert img.width <= LIMITS.raster_width and img.height <= LIMITS.max_raster_height
    elapsed = time.monotonic() - started
    assert elapsed < case.within, f"{name} took {elapsed:.1f}s"
    assert await pool.run(add, 2, 2) == 4  # the pool survived


@module_loop
async def test_pool_is_healthy_after_the_corpus(pool: WorkerPool, tmp_path: Path) -> None:
    result = await process_document(pool, corpus.make_text_pdf(tmp_path, pages=3),
                                    tmp_path / "out", LIMITS)  # fmt: skip
    assert result.status is Stage.READY
    assert len(await refilled(pool)) == 2
