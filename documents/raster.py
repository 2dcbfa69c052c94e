"""Page → JPEG rasterisation with a pixel cap (runs inside workers).

MuPDF allocates the whole pixmap up front, so the zoom is derived from the
target width and then clamped by a height and a total-pixel cap: an absurd
page (200 × 200 in, or 1 pt × 10 m) can never allocate more than the cap.
JPEG encoding goes through Pillow, ~10× faster than PyMuPDF's encoder.
"""

from __future__ import annotations

import io
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pymupdf
from PIL import Image

MIN_PAGE_PT = 1.0  # smaller pages are degenerate (zero-area boxes in broken files)


@dataclass(frozen=True)
class RasterSpec:
    width: int = 1536
    quality: int = 80
    max_height: int = 4096
    max_pixels: int = 25_000_000


@dataclass(frozen=True)
class ZoomPlan:
    zoom: float
    width_px: int
    height_px: int
    downscaled: bool  # the cap reduced the zoom below width / page width


def plan_zoom(width_pt: float, height_pt: float, spec: RasterSpec) -> ZoomPlan:
    if width_pt < MIN_PAGE_PT or height_pt < MIN_PAGE_PT:
        raise ValueError(f"degenerate page size {width_pt:.2f} x {height_pt:.2f} pt")
    wanted = spec.width / width_pt
    zoom = min(
        wanted,
        spec.max_height / height_pt,
        math.sqrt(spec.max_pixels / (width_pt * height_pt)),
    )
    # MuPDF rounds the pixmap outwards, so allow for +1 px on each side.
    return ZoomPlan(
        zoom,
        math.ceil(width_pt * zoom) + 1,
        math.ceil(height_pt * zoom) + 1,
        zoom < wanted * 0.999,
    )


@dataclass(frozen=True)
class PageImage:
    image: Image.Image
    plan: ZoomPlan
    pixmap: pymupdf.Pixmap  # owns the pixels ``image`` points into: keep it alive


def render_image(page: pymupdf.Page, spec: RasterSpec) -> PageImage:
    """Render ``page`` (with annotations) to an RGB Pillow image (zero-copy)."""
    rect = page.rect
    plan = plan_zoom(rect.width, rect.height, spec)
    pix = page.get_pixmap(
        matrix=pymupdf.Matrix(plan.zoom, plan.zoom), colorspace=pymupdf.csRGB, alpha=False
    )
    if pix.width * pix.height > spec.max_pixels + 4 * (pix.width + pix.height):
        raise RuntimeError("pixmap exceeds the pixel cap")  # defence in depth
    img = Image.frombuffer(
        "RGB", (pix.width, pix.height), pix.samples_mv, "raw", "RGB", pix.stride, 1
    )
    return PageImage(img, plan, pix)


def encode_jpeg(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def thumbnail(img: Image.Image, width: int) -> Image.Image:
    height = max(1, round(img.height * width / img.width))
    # reducing_gap: Pillow's fast two-step path (integer reduce, then resample).
    return img.resize((width, height), Image.Resampling.BILINEAR, reducing_gap=2.0)


def placeholder_jpeg(width_px: int, height_px: int, quality: int = 60) -> bytes:
    """A neutral grey page with a diagonal cross, for pages that failed.

    No text: the bilingual explanation is in the warning the UI shows.
    """
    from PIL import ImageDraw

    width_px, height_px = max(width_px, 16), max(height_px, 16)
    img = Image.new("RGB", (width_px, height_px), (236, 236, 236))
    draw = ImageDraw.Draw(img)
    line = max(2, width_px // 200)
    colour = (200, 200, 200)
    draw.rectangle((0, 0, width_px - 1, height_px - 1), outline=colour, width=line)
    draw.line((0, 0, width_px, height_px), fill=colour, width=line)
    draw.line((0, height_px, width_px, 0), fill=colour, width=line)
    return encode_jpeg(img, quality)


def write_atomic(path: Path | str, data: bytes) -> None:
    """Readers (HTTP handlers) must never see a half-written image."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
