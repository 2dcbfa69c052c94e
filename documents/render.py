"""On-demand page rendering for confidential, view-only mode.

The tablet never receives the PDF, only JPEGs rendered per request, each
optionally watermarked with the viewer's identity. Watermarking is drawn into
the page with PyMuPDF *before* rasterising, by
``documents.watermark.apply_watermark(page, lines)`` when that module is
present, else by a minimal built-in fallback. Because the page is modified,
a watermarked render opens a private copy of the document instead of the
worker's cached one.

A page that cannot be rendered (error, timeout, crash) is answered with a
placeholder, made by a worker as well: the web process never makes pixels.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from documents import fonts, jobs, raster
from documents.validation import Limits
from documents.worker_pool import PRIORITY_HIGH, WorkerPool

if TYPE_CHECKING:
    import pymupdf
# PyMuPDF is imported where used, in the workers (documents/mupdf.py).

log = logging.getLogger(__name__)
MIN_WIDTH = 64
MAX_WIDTH = 3072
DEFAULT_OPACITY = 0.15

WatermarkHook = Callable[..., None]  # (page, lines) -> None, may accept opacity=


@dataclass(frozen=True)
class RenderedPage:
    jpeg: bytes
    width_px: int
    height_px: int
    downscaled: bool
    placeholder: bool = False  # the page failed; this stands in for it


class PageOutOfRange(ValueError):
    pass


class PageUnavailable(Exception):
    """Neither the page nor a placeholder could be made (the pool is failing)."""


async def render_view(
    pool: WorkerPool,
    pdf_path: Path | str,
    page_index: int,
    width: int = 1536,
    *,
    watermark_lines: Sequence[str] | None = None,
    watermark_opacity: float = DEFAULT_OPACITY,
    limits: Limits | None = None,
    timeout: float | None = None,
    page_size: tuple[float, float] | None = None,
) -> RenderedPage:
    """Render page ``page_index`` (0-based) at ``width`` px to JPEG bytes.

    Raises ValueError for a bad width/page. A page that fails or is too slow
    (its worker is killed) is answered with a placeholder shaped like
    ``page_size`` (points, as inspected); PageUnavailable if even that fails.
    """
    limits = limits or Limits()
    if not MIN_WIDTH <= width <= MAX_WIDTH:
        raise ValueError(f"width must be within {MIN_WIDTH}..{MAX_WIDTH}")
    if page_index < 0:
        raise ValueError("page index must be >= 0")
    spec = raster.RasterSpec(
        width, limits.jpeg_quality, limits.max_raster_height, limits.max_raster_pixels,
        limits.max_aspect,
    )  # fmt: skip
    lines = [str(line) for line in watermark_lines or [] if str(line).strip()]
    try:
        result: RenderedPage = await pool.run(
            render_page_jpeg, str(pdf_path), page_index, spec, lines, watermark_opacity,
            timeout=timeout or limits.page_timeout, priority=PRIORITY_HIGH,
        )  # fmt: skip
        return result
    except PageOutOfRange:
        raise
    except Exception as exc:
        failure: Exception = exc
        log.info("page %d of %s failed to render: %r", page_index, pdf_path, exc)
    width_pt, height_pt = page_size or raster.A4_PT
    try:
        jpeg: bytes = await pool.run(jobs.placeholder_view, width_pt, height_pt, spec,
                                     timeout=raster.PLACEHOLDER_TIMEOUT, priority=PRIORITY_HIGH)
    except Exception as exc:
        raise PageUnavailable(f"page {page_index}: {failure!r}; placeholder: {exc!r}") from exc
    plan = raster.fit(width_pt, height_pt, spec)
    return RenderedPage(jpeg, plan.width_px, plan.height_px, plan.downscaled, placeholder=True)


def render_page_jpeg(
    path: str,
    page_index: int,
    spec: raster.RasterSpec,
    watermark_lines: list[str],
    watermark_opacity: float = DEFAULT_OPACITY,
) -> RenderedPage:
    """Worker job: render one page (optionally watermarked) to JPEG bytes."""
    if not watermark_lines:
        return _render(_page(jobs.open_cached(path), page_index), spec)
    from documents.mupdf import pymupdf
    with pymupdf.open(path, filetype="pdf") as doc:  # private copy: we modify the page
        page = _page(doc, page_index)
        apply_watermark_to_page(page, watermark_lines, watermark_opacity)
        return _render(page, spec)


def _page(doc: pymupdf.Document, page_index: int) -> pymupdf.Page:
    if not 0 <= page_index < doc.page_count:
        raise PageOutOfRange(f"page {page_index} out of range (document has {doc.page_count})")
    return doc[page_index]


def _render(page: pymupdf.Page, spec: raster.RasterSpec) -> RenderedPage:
    rendered = raster.render_image(page, spec)
    img = rendered.image
    jpeg = raster.encode_jpeg(img, spec.quality)
    return RenderedPage(jpeg, img.width, img.height, rendered.plan.downscaled)


def watermark_hook() -> WatermarkHook | None:
    """documents.watermark.apply_watermark if that module exists, else None."""
    try:
        from documents.watermark import apply_watermark
    except ImportError:
        return None
    hook: WatermarkHook = apply_watermark
    return hook


def apply_watermark_to_page(page: pymupdf.Page, lines: list[str], opacity: float) -> None:
    hook = watermark_hook()
    if hook is None:
        fallback_watermark(page, lines, opacity)
        return
    kwargs: dict[str, Any] = {}
    if "opacity" in inspect.signature(hook).parameters:
        kwargs["opacity"] = opacity
    hook(page, lines, **kwargs)


def fallback_watermark(page: pymupdf.Page, lines: list[str], opacity: float) -> None:
    """Minimal diagonal watermark (used only if documents.watermark is absent)."""
    from documents.mupdf import pymupdf
    font = fonts.vietnamese_font()
    name = fonts.insert_font(page)
    rect = page.rect * page.derotation_matrix  # draw in unrotated page space
    size = max(10.0, min(rect.width, rect.height) / 18)
    centre = (rect.tl + rect.br) / 2
    angle = 35 + page.rotation
    morph = (centre, pymupdf.Matrix(angle))
    step = size * 4
    rows = int(math.hypot(rect.width, rect.height) / step) + 1
    shape = page.new_shape()
    for row in range(-rows, rows + 1):
        text = lines[row % len(lines)]
        x = centre.x - font.text_length(text, size) / 2
        shape.insert_text((x, centre.y + row * step), text, fontname=name, fontsize=size,
                          color=(0.5, 0.5, 0.5), fill_opacity=opacity, morph=morph)  # fmt: skip
    shape.commit(overlay=True)
