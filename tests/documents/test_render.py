"""On-demand view-only rendering with an optional watermark."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import pymupdf
import pytest
import pytest_asyncio
from PIL import Image, ImageChops

from documents import render
from documents.raster import RasterSpec
from documents.render import render_page_jpeg, render_view
from documents.worker_pool import WorkerPool
from tests.documents import corpus

module_loop = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def pool() -> AsyncIterator[WorkerPool]:
    async with WorkerPool(size=2) as p:
        yield p


def _image(jpeg: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(jpeg))
    assert img.format == "JPEG"
    return img.convert("L")


@module_loop
async def test_render_at_requested_width(pool: WorkerPool, tmp_path: Path) -> None:
    pdf = corpus.make_text_pdf(tmp_path, pages=2)
    page = await render_view(pool, pdf, 1, 800)
    assert (page.width_px, page.height_px) == _image(page.jpeg).size
    assert page.width_px == 800 and not page.downscaled


@module_loop
async def test_watermark_changes_the_pixels(pool: WorkerPool, tmp_path: Path) -> None:
    pdf = corpus.make_text_pdf(tmp_path, pages=1)
    plain = await render_view(pool, pdf, 0, 600)
    marked = await render_view(
        pool, pdf, 0, 600, watermark_lines=["Nguyễn Văn An — Sở Tài chính", "27/11/2026 08:00"]
    )
    diff = ImageChops.difference(_image(plain.jpeg), _image(marked.jpeg))
    assert diff.getbbox() is not None
    # The cached (unwatermarked) document must not have been modified.
    again = await render_view(pool, pdf, 0, 600)
    assert ImageChops.difference(_image(plain.jpeg), _image(again.jpeg)).getbbox() is None


def test_fallback_watermark_when_module_is_absent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(render, "watermark_hook", lambda: None)
    pdf = corpus.make_text_pdf(tmp_path, pages=1)
    spec = RasterSpec(width=400)
    plain = render_page_jpeg(str(pdf), 0, spec, [])
    marked = render_page_jpeg(str(pdf), 0, spec, ["Trần Thị Bình"], 0.3)
    assert ImageChops.difference(_image(plain.jpeg), _image(marked.jpeg)).getbbox() is not None


def test_hook_receives_page_and_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, list[str]]] = []

    def hook(page: pymupdf.Page, lines: list[str]) -> None:
        calls.append((page.number, lines))

    monkeypatch.setattr(render, "watermark_hook", lambda: hook)
    pdf = corpus.make_text_pdf(tmp_path, pages=2)
    render_page_jpeg(str(pdf), 1, RasterSpec(width=200), ["Lê Văn C"])
    assert calls == [(1, ["Lê Văn C"])]


@module_loop
async def test_bad_requests(pool: WorkerPool, tmp_path: Path) -> None:
    pdf = corpus.make_text_pdf(tmp_path, pages=1)
    for width in (10, 10_000):
        with pytest.raises(ValueError):
            await render_view(pool, pdf, 0, width)
    with pytest.raises(ValueError, match="out of range"):
        await render_view(pool, pdf, 5, 600)


@module_loop
async def test_slow_page_is_answered_with_a_placeholder(pool: WorkerPool, tmp_path: Path) -> None:
    pdf = corpus.make_many_paths_pdf(tmp_path)
    busy = set(pool.worker_pids())
    page = await render_view(pool, pdf, 0, 1536, timeout=1.0, page_size=(595, 842))
    assert page.placeholder and _image(page.jpeg).size == (1536, round(842 * 1536 / 595))
    assert set(pool.worker_pids()) != busy  # the slow render's worker was killed
    page = await render_view(pool, corpus.make_text_pdf(tmp_path, pages=1), 0, 300)
    assert page.width_px == 300 and not page.placeholder


@module_loop
async def test_a_page_too_tall_for_jpeg_is_still_shown(pool: WorkerPool, tmp_path: Path) -> None:
    pdf = corpus.make_page_box_pdf(tmp_path, "tall", corpus.HOSTILE_PAGE_BOXES["tall_strip"])
    page = await render_view(pool, pdf, 0, 3072)
    assert not page.placeholder and _image(page.jpeg).size == (page.width_px, page.height_px)
    assert page.height_px <= 4096 and page.width_px * 20 >= page.height_px
