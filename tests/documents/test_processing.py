"""process_document on good files, pixel caps, sanitiser, placeholders, conversion."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pymupdf
import pytest
import pytest_asyncio
from PIL import Image

from documents import office, processing, raster
from documents.errors import DocumentRejected, RejectCode, WarningCode
from documents.processing import ProgressEvent, Stage, process_document
from documents.raster import RasterSpec, plan_zoom
from documents.sanitize import sanitize_pdf
from documents.validation import Limits
from documents.worker_pool import WorkerPool
from tests.documents import corpus

# Async tests share one module-scoped pool (worker start-up is ~0.2 s each).
module_loop = pytest.mark.asyncio(loop_scope="module")

FAST = Limits(page_timeout=3.0, inspect_timeout=5.0, text_timeout=5.0, sanitize_timeout=5.0)
FAST_SPEC = RasterSpec(FAST.raster_width, max_height=FAST.max_raster_height,
                       max_pixels=FAST.max_raster_pixels)
THUMB_SPEC = raster.thumb_spec(FAST.thumb_width)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def pool() -> AsyncIterator[WorkerPool]:
    async with WorkerPool(size=2) as p:
        yield p


# --- happy path ----------------------------------------------------------------------


@module_loop
async def test_text_document_end_to_end(pool: WorkerPool, tmp_path: Path) -> None:
    pdf = corpus.make_text_pdf(tmp_path, pages=8)
    events: list[ProgressEvent] = []
    result = await process_document(pool, pdf, tmp_path / "out", FAST, events.append)

    assert result.status is Stage.READY and result.warnings == []
    assert result.page_count == 8
    assert result.page_sizes[0].width == pytest.approx(595, abs=1)
    assert [e.title for e in result.outline[:2]] == ["Mục 1: Biên bản", "Mục 2: Biên bản"]
    assert result.outline[1].page_index == 1
    assert "BIÊN BẢN HỌP" in result.page_texts[0] and "Trang số 8" in result.page_texts[7]
    for raster_path, thumb_path, size in zip(
        result.rasters, result.thumbnails, result.raster_sizes, strict=True
    ):
        with Image.open(raster_path) as img:
            assert img.format == "JPEG" and img.width == 1536 and img.size == size
        with Image.open(thumb_path) as thumb:
            assert thumb.width == 200
    assert result.sanitized_pdf is not None
    with pymupdf.open(result.sanitized_pdf) as copy:
        assert copy.page_count == 8
    assert result.timings["first_page"] < 1.0

    stages = [e.stage for e in events]
    assert stages[0] is Stage.VALIDATING and stages[-1] is Stage.READY
    rendered = [e for e in events if e.stage is Stage.RENDERING and e.page_index is not None]
    assert rendered[0].page_index == 0  # page 1 is viewable before any other page
    assert [e.done for e in rendered] == list(range(1, 9))
    assert all(e.total == 8 for e in rendered)


@module_loop
async def test_async_and_failing_callbacks_are_tolerated(pool: WorkerPool, tmp_path: Path) -> None:
    pdf = corpus.make_text_pdf(tmp_path, pages=2)
    seen: list[Stage] = []

    async def callback(event: ProgressEvent) -> None:
        seen.append(event.stage)
        raise RuntimeError("socket gone")

    result = await process_document(pool, pdf, tmp_path / "out", FAST, callback)
    assert result.status is Stage.READY and seen[-1] is Stage.READY


@module_loop
async def test_cancelling_processing_kills_its_jobs(pool: WorkerPool, tmp_path: Path) -> None:
    pdf = corpus.make_many_paths_pdf(tmp_path)
    task = asyncio.create_task(process_document(pool, pdf, tmp_path / "out", Limits()))
    await asyncio.sleep(0.6)  # rendering page 1, which would take ~11 s
    busy = list(pool.worker_pids())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.3)
    assert pool.worker_pids() != busy  # the rendering worker was killed and replaced
    ok = await process_document(pool, corpus.make_text_pdf(tmp_path), tmp_path / "o2", FAST)
    assert ok.status is Stage.READY


# --- failure policy --------------------------------------------------------------------


@module_loop
async def test_failed_page_gets_placeholder_and_warning(pool: WorkerPool, tmp_path: Path) -> None:
    pdf = corpus.make_many_paths_pdf(tmp_path)
    limits = Limits(page_timeout=1.0)
    result = await process_document(pool, pdf, tmp_path / "out", limits)
    assert result.status is Stage.READY_WITH_WARNINGS
    assert result.placeholder_pages == [0]
    [warning] = [w for w in result.warnings if w.page_index == 0]
    assert warning.code is WarningCode.PAGE_TIMEOUT
    assert "Page 1" in warning.message_en and "Trang 1" in warning.message_vi
    with Image.open(result.rasters[0]) as img:
        assert img.format == "JPEG" and img.width == 1536


@module_loop
async def test_placeholders_are_made_by_workers_within_the_caps(
    pool: WorkerPool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The 380-byte PDF: its placeholder thumbnail was 200 × 819 200 px, built in
    # the web process. Here every page times out, and this process must make no image.
    def no_pixels_here(*_: object, **__: object) -> None:
        raise AssertionError("an image was made outside the workers")

    monkeypatch.setattr(Image, "new", no_pixels_here)
    monkeypatch.setattr(raster, "placeholder_jpeg", no_pixels_here)
    pdf = corpus.make_page_box_pdf(tmp_path, "tall", corpus.HOSTILE_PAGE_BOXES["tall_strip"])
    result = await process_document(pool, pdf, tmp_path / "out", Limits(page_timeout=0.001))
    assert result.status is Stage.READY_WITH_WARNINGS and result.placeholder_pages == [0]
    monkeypatch.undo()
    with Image.open(result.rasters[0]) as img:
        assert img.size == (205, 4096)
    with Image.open(result.thumbnails[0]) as img:
        assert img.width == 200 and img.height <= 4000
    assert not list((tmp_path / "out").rglob("*.tmp-*"))


@module_loop
@pytest.mark.parametrize("name", list(corpus.HOSTILE_PAGE_BOXES))
async def test_hostile_page_boxes_end_ready_with_capped_images(
    name: str, pool: WorkerPool, tmp_path: Path
) -> None:
    pdf = corpus.make_page_box_pdf(tmp_path, name, corpus.HOSTILE_PAGE_BOXES[name])
    result = await process_document(pool, pdf, tmp_path / "out", FAST)
    assert result.status in (Stage.READY, Stage.READY_WITH_WARNINGS)
    assert result.placeholder_pages == []
    for path, spec in ((result.rasters[0], FAST_SPEC), (result.thumbnails[0], THUMB_SPEC)):
        with Image.open(path) as img:
            w, h = img.size
        assert w <= spec.width and h <= spec.max_height and w * h <= spec.max_pixels
        assert max(w, h) <= 21 * min(w, h)


@module_loop
async def test_too_many_failed_pages_rejects_as_too_complex(
    pool: WorkerPool, tmp_path: Path
) -> None:
    pdf = corpus.make_many_paths_pdf(tmp_path)
    events: list[ProgressEvent] = []
    with pytest.raises(DocumentRejected) as info:
        await process_document(
            pool, pdf, tmp_path / "out", Limits(page_timeout=1.0, max_failed_pages=0),
            events.append,
        )  # fmt: skip
    assert info.value.code is RejectCode.TOO_COMPLEX
    assert events[-1].stage is Stage.REJECTED and events[-1].code == "too_complex"
    assert "quá phức tạp" in events[-1].message_vi


@module_loop
async def test_a_sanitiser_timeout_leaves_no_temporary_file(pool: WorkerPool,
                                                           tmp_path: Path) -> None:
    pdf = corpus.make_many_links_pdf(tmp_path)
    out = tmp_path / "out"
    seen: set[str] = set()

    async def watch() -> None:
        while True:
            seen.update(p.name for p in out.glob("*.tmp-*"))
            await asyncio.sleep(0.01)

    watcher = asyncio.create_task(watch())
    try:
        result = await process_document(pool, pdf, out, Limits(sanitize_timeout=1.5))
    finally:
        watcher.cancel()
    assert WarningCode.SANITIZE_FAILED in {w.code for w in result.warnings}
    assert result.sanitized_pdf is None
    assert seen, "the sanitiser was killed before it wrote anything: make it slower"
    assert not list(out.rglob("*.tmp-*"))  # what the killed worker left was removed


@module_loop
async def test_document_deadline(pool: WorkerPool, tmp_path: Path) -> None:
    pdf = corpus.make_many_paths_pdf(tmp_path)
    with pytest.raises(DocumentRejected) as info:
        await process_document(pool, pdf, tmp_path / "out", Limits(document_timeout=1.0))
    assert info.value.code is RejectCode.TIMEOUT


# --- pixel cap -------------------------------------------------------------------------


def test_zoom_follows_target_width() -> None:
    plan = plan_zoom(595, 842, RasterSpec(width=1536))
    assert plan.zoom == pytest.approx(1536 / 595)
    assert not plan.downscaled and plan.height_px <= 2180


@pytest.mark.parametrize(
    ("width_pt", "height_pt"),
    [(72, 72 * 100), (14400, 14400), (3, 14400), (14400, 3)],
)
def test_pixel_cap_bounds_every_page_shape(width_pt: float, height_pt: float) -> None:
    spec = RasterSpec(width=1536, max_height=4096, max_pixels=25_000_000)
    plan = plan_zoom(width_pt, height_pt, spec)
    assert plan.height_px <= 4096 + 1 and plan.width_px <= 1536 + 1
    assert plan.width_px * plan.height_px <= 25_000_000 + 2 * (plan.width_px + plan.height_px)


def test_pixel_cap_total_pixels() -> None:
    plan = plan_zoom(595, 842, RasterSpec(width=6000, max_height=100_000, max_pixels=4_000_000))
    assert plan.downscaled and plan.width_px * plan.height_px <= 4_100_000


def test_degenerate_page_is_refused() -> None:
    with pytest.raises(ValueError):
        plan_zoom(0.0, 842, RasterSpec())


# --- sanitiser -------------------------------------------------------------------------


def test_sanitizer_removes_active_content_and_keeps_safe_links(tmp_path: Path) -> None:
    src = corpus.make_active_content_pdf(tmp_path)
    report = sanitize_pdf(str(src), str(tmp_path / "clean.pdf"))
    assert report.changed and report.page_count == 2
    assert report.removed["javascript"] >= 1 and report.removed["embedded_files"] >= 1

    with pymupdf.open(tmp_path / "clean.pdf") as doc:
        assert doc.embfile_count() == 0
        cat = doc.pdf_catalog()
        assert doc.xref_get_key(cat, "OpenAction")[0] == "null"
        assert doc.xref_get_key(cat, "Names/JavaScript")[0] == "null"
        raw = b"".join(
            doc.xref_object(x, compressed=True).encode("latin-1", "replace")
            for x in range(1, doc.xref_length())
        )
        # "/Key null" is how PyMuPDF deletes a key (null == absent in PDF).
        for token in (rb"/JavaScript\b(?!\s*null)", rb"/Launch", rb"/EmbeddedFiles?\b(?!\s*null)",
                      rb"javascript:", rb"/OpenAction\b(?!\s*null)"):  # fmt: skip
            assert not re.search(token, raw), token
        links = doc[0].get_links()
        assert {(link["kind"], link.get("uri")) for link in links} == {
            (pymupdf.LINK_URI, "https://example.gov.vn/"),
            (pymupdf.LINK_GOTO, None),
        }
        kinds = {kind for _, kind, _ in doc[0].annot_xrefs()}
        assert pymupdf.PDF_ANNOT_FILE_ATTACHMENT not in kinds
        assert pymupdf.PDF_ANNOT_TEXT in kinds  # ordinary annotations survive


def test_sanitizer_leaves_clean_documents_alone(tmp_path: Path) -> None:
    src = corpus.make_text_pdf(tmp_path, pages=3)
    report = sanitize_pdf(str(src), str(tmp_path / "clean.pdf"))
    assert not report.changed, report.removed
    with pymupdf.open(tmp_path / "clean.pdf") as doc:
        assert len(doc.get_toc()) == 3 and "Đồng Hới" in doc[0].get_text()


# --- Office conversion -------------------------------------------------------------------


def _fake_soffice(tmp_path: Path, body: str) -> str:
    script = tmp_path / "soffice"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


@module_loop
async def test_office_conversion_unavailable(
    pool: WorkerPool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(office, "find_converter", lambda: None)
    with pytest.raises(DocumentRejected) as info:
        await process_document(pool, corpus.make_docx_like(tmp_path), tmp_path / "out", FAST)
    assert info.value.code is RejectCode.CONVERSION_UNAVAILABLE


@module_loop
async def test_office_conversion_with_converter(
    pool: WorkerPool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fixture = corpus.make_text_pdf(tmp_path, pages=2)
    # Mimics soffice's CLI contract: --outdir DIR ... INPUT -> DIR/<stem>.pdf
    body = f'''
while [ $# -gt 1 ]; do [ "$1" = --outdir ] && out="$2"; shift; done
in="$1"; stem=$(basename "${{in%.*}}"); mkdir -p "$out"; cp "{fixture}" "$out/$stem.pdf"
'''
    converter = _fake_soffice(tmp_path, body)
    monkeypatch.setattr(office, "find_converter", lambda: converter)
    events: list[ProgressEvent] = []
    docx = corpus.make_docx_like(tmp_path)
    result = await process_document(pool, docx, tmp_path / "out", FAST, events.append)
    assert Stage.CONVERTING in [e.stage for e in events]
    assert result.converted_from == "docx" and result.page_count == 2
    assert result.source_pdf == tmp_path / "out" / "converted.pdf"


@module_loop
async def test_office_conversion_timeout(
    pool: WorkerPool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    converter = _fake_soffice(tmp_path, "sleep 30\n")
    monkeypatch.setattr(office, "find_converter", lambda: converter)
    limits = Limits(convert_timeout=0.5)
    with pytest.raises(DocumentRejected) as info:
        await process_document(pool, corpus.make_word97_doc(tmp_path), tmp_path / "out", limits)
    assert info.value.code is RejectCode.CONVERSION_FAILED


@module_loop
@pytest.mark.parametrize("make", [corpus.make_ole_random, corpus.make_ole_header])
async def test_junk_behind_an_ole_header_never_reaches_the_converter(
    make: corpus.Maker, pool: WorkerPool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A converter that would turn anything into a 2-page PDF, as LibreOffice did with junk.
    fixture = corpus.make_text_pdf(tmp_path, pages=2)
    body = f'''
while [ $# -gt 1 ]; do [ "$1" = --outdir ] && out="$2"; shift; done
in="$1"; stem=$(basename "${{in%.*}}"); mkdir -p "$out"; cp "{fixture}" "$out/$stem.pdf"
'''
    monkeypatch.setattr(office, "find_converter", lambda: _fake_soffice(tmp_path, body))
    events: list[ProgressEvent] = []
    with pytest.raises(DocumentRejected) as info:
        await process_document(pool, make(tmp_path), tmp_path / "out", FAST, events.append)
    assert info.value.code is RejectCode.DAMAGED
    assert Stage.CONVERTING not in [e.stage for e in events]


def test_page_ranges_for_messages() -> None:
    assert processing._page_ranges([0, 1, 2, 5, 7, 8]) == "1–3, 6, 8–9"
    assert os.sep not in processing._page_ranges([3])


@module_loop
async def test_office_conversion_without_a_sandbox_needs_the_operators_consent(
    pool: WorkerPool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fixture = corpus.make_text_pdf(tmp_path, pages=1)
    converter = _fake_soffice(tmp_path, f'''
while [ $# -gt 1 ]; do [ "$1" = --outdir ] && out="$2"; shift; done
mkdir -p "$out"; cp "{fixture}" "$out/input.pdf"
''')
    monkeypatch.setattr(office, "find_converter", lambda: converter)
    no_unshare = tmp_path / "bin"
    no_unshare.mkdir()
    (no_unshare / "unshare").write_text("#!/bin/sh\nexit 1\n")
    (no_unshare / "unshare").chmod(0o755)
    monkeypatch.setenv("PATH", f"{no_unshare}:{os.environ['PATH']}")
    docx = corpus.make_docx_like(tmp_path)
    with pytest.raises(DocumentRejected) as info:
        await process_document(pool, docx, tmp_path / "out", FAST)
    assert info.value.code is RejectCode.CONVERSION_UNAVAILABLE
    consent = dataclasses.replace(FAST, office_without_sandbox=True)
    result = await process_document(pool, docx, tmp_path / "out", consent)
    assert result.converted_from == "docx" and result.page_count == 1
