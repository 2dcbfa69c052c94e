"""Page → JPEG rasterisation under pixel caps (runs inside workers only).

MuPDF and Pillow allocate a whole image up front, so every image size we make
(page render, thumbnail, placeholder) comes from :func:`fit`, which is total:
any page geometry, however absurd (1 pt × 10 m, 10⁹ pt with /UserUnit, NaN),
gives an image within ``max_pixels``, ``max_height``, ``MAX_SIDE_PX`` and
``max_aspect``. A page more elongated than ``max_aspect`` is stretched to that
shape (a 1 × 100 000 pt strip becomes a 205 × 4096 px image), so neither the
image nor a thumbnail derived from it can grow along its long side.
JPEG encoding goes through Pillow, ~10× faster than PyMuPDF's encoder.
"""

from __future__ import annotations

import io
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # both imported where used: a server process imports this module for
    import pymupdf  # its sizes and names, and only workers render (documents/mupdf.py)
    from PIL import Image

MAX_SIDE_PX = 16_384  # no image side beyond this (JPEG itself stops at 65 500)
MAX_ASPECT = 20.0  # longer side / shorter side of any image we make
A4_PT = (595.0, 842.0)  # the shape given to pages without a usable size
PLACEHOLDER_TIMEOUT = 10.0  # s; a placeholder takes milliseconds, whatever the page
MIN_PT, MAX_PT = 1e-3, 1e12  # sides outside are clamped (no under- or overflow below)


@dataclass(frozen=True)
class RasterSpec:
    width: int = 1536  # wanted width, px
    quality: int = 80
    max_height: int = 4096
    max_pixels: int = 25_000_000
    max_aspect: float = MAX_ASPECT


def thumb_spec(width: int, quality: int = 70) -> RasterSpec:
    """Thumbnails: ``width`` wide, as tall as the aspect cap allows."""
    return RasterSpec(width, quality, math.ceil(width * MAX_ASPECT),
                      math.ceil(width * width * MAX_ASPECT))  # fmt: skip


@dataclass(frozen=True)
class ZoomPlan:
    zoom_x: float  # pixels per point, horizontally
    zoom_y: float
    width_px: int
    height_px: int
    downscaled: bool  # a cap reduced the resolution below the wanted width
    reshaped: bool  # the page's shape was beyond max_aspect (or unusable): stretched to fit

    @property
    def zoom(self) -> float:
        return self.zoom_x


def fit(width_pt: float, height_pt: float, spec: RasterSpec) -> ZoomPlan:
    """The image size for a ``width_pt`` × ``height_pt`` page: never raises, never exceeds
    the caps (every side in 1..cap, the product within ``spec.max_pixels``)."""
    w, h = float(width_pt), float(height_pt)
    reshaped = False
    if not _usable(w, h):
        (w, h), reshaped = A4_PT, True
    w, h = min(max(w, MIN_PT), MAX_PT), min(max(h, MIN_PT), MAX_PT)
    aspect = max(1.0, spec.max_aspect)
    shape_w, shape_h = w, h
    if h > w * aspect:
        shape_h, reshaped = w * aspect, True
    elif w > h * aspect:
        shape_w, reshaped = h * aspect, True
    max_w = min(MAX_SIDE_PX, max(1, spec.width))
    max_h = min(MAX_SIDE_PX, max(1, spec.max_height))
    max_pixels = max(1, spec.max_pixels)
    wanted = max_w / shape_w
    scale = min(wanted, max_h / shape_h, math.sqrt(max_pixels / (shape_w * shape_h)))
    width_px = max(1, min(round(shape_w * scale), max_w, max_pixels))
    height_px = max(1, min(round(shape_h * scale), max_h, max_pixels // width_px))
    return ZoomPlan(width_px / w, height_px / h, width_px, height_px,
                    scale < wanted * 0.999, reshaped)  # fmt: skip


def plan_zoom(width_pt: float, height_pt: float, spec: RasterSpec) -> ZoomPlan:
    """:func:`fit` for a page that is to be rendered: its box must be usable."""
    if not _usable(width_pt, height_pt) or not MIN_PT <= min(width_pt, height_pt) <= MAX_PT \
            or max(width_pt, height_pt) > MAX_PT:
        raise ValueError(f"unusable page size {width_pt!r} x {height_pt!r} pt")
    return fit(width_pt, height_pt, spec)


def _usable(width_pt: float, height_pt: float) -> bool:
    return math.isfinite(width_pt) and math.isfinite(height_pt) and width_pt > 0 and height_pt > 0


@dataclass(frozen=True)
class PageImage:
    image: Image.Image
    plan: ZoomPlan
    pixmap: pymupdf.Pixmap  # owns the pixels ``image`` points into: keep it alive


def render_image(page: pymupdf.Page, spec: RasterSpec) -> PageImage:
    """Render ``page`` (with annotations) to an RGB Pillow image (zero-copy)."""
    from PIL import Image

    from documents.mupdf import pymupdf
    rect = page.rect
    plan = plan_zoom(rect.width, rect.height, spec)
    # The page box transformed by this matrix is exactly width_px × height_px (MuPDF
    # rounds the pixmap outwards with a 0.001 px tolerance).
    pix = page.get_pixmap(matrix=pymupdf.Matrix(plan.zoom_x, plan.zoom_y),
                          colorspace=pymupdf.csRGB, alpha=False)  # fmt: skip
    if pix.width > plan.width_px + 1 or pix.height > plan.height_px + 1:
        raise RuntimeError("pixmap exceeds the pixel cap")  # defence in depth
    img = Image.frombuffer(
        "RGB", (pix.width, pix.height), pix.samples_mv, "raw", "RGB", pix.stride, 1
    )
    return PageImage(img, plan, pix)


def encode_jpeg(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def thumbnail(img: Image.Image, spec: RasterSpec) -> Image.Image:
    from PIL import Image

    plan = fit(img.width, img.height, spec)
    # reducing_gap: Pillow's fast two-step path (integer reduce, then resample).
    return img.resize((plan.width_px, plan.height_px), Image.Resampling.BILINEAR,
                      reducing_gap=2.0)  # fmt: skip


def placeholder_jpeg(width_px: int, height_px: int, quality: int = 60) -> bytes:
    """A neutral grey page with a diagonal cross, for pages that failed.

    No text: the bilingual explanation is in the warning the UI shows. Sizes come
    from :func:`fit`; anything beyond its caps is refused rather than allocated.
    """
    from PIL import Image, ImageDraw

    width_px, height_px = max(width_px, 16), max(height_px, 16)
    if max(width_px, height_px) > MAX_SIDE_PX or width_px * height_px > RasterSpec.max_pixels:
        raise ValueError(f"placeholder of {width_px} x {height_px} px exceeds the caps")
    img = Image.new("RGB", (width_px, height_px), (236, 236, 236))
    draw = ImageDraw.Draw(img)
    line = max(2, min(width_px, height_px) // 200)
    colour = (200, 200, 200)
    draw.rectangle((0, 0, width_px - 1, height_px - 1), outline=colour, width=line)
    draw.line((0, 0, width_px, height_px), fill=colour, width=line)
    draw.line((0, height_px, width_px, 0), fill=colour, width=line)
    return encode_jpeg(img, quality)


def temp_for(path: Path | str, tag: str) -> str:
    """The temporary name a job writes ``path`` under before renaming it into place.

    The caller picks ``tag`` and hands the name to WorkerPool.run(cleanup=...), so a
    worker killed mid-write (timeout, crash) leaves nothing behind."""
    return f"{path}.tmp-{tag}"


def write_atomic(path: Path | str, data: bytes, tmp: str | None = None) -> None:
    """Readers (HTTP handlers) must never see a half-written image.

    ``tmp``: the temporary name to use (see :func:`temp_for`), else a fresh one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if tmp is None:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    else:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
