"""Diagonal, repeated, semi-transparent watermark identifying the viewer.

Written into the page *content* (not an annotation) so deleting annotations
in a viewer does not remove it, and on top of existing content so scanned
pages (one big image) do not hide it. Uses an embedded Noto Sans because the
viewer's name and unit are Vietnamese.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pymupdf

from . import fonts

DEFAULT_COLOR = (0.45, 0.45, 0.45)
FONT_NAME = "hopso-wm"
ANGLE = 35.0  # degrees counter-clockwise; shallower than 45 reads better on A4


def _font_size(page_rect: pymupdf.Rect, widest: float) -> float:
    """Scale so the longest line spans about 60 % of the page's shorter side."""
    target = 0.6 * min(page_rect.width, page_rect.height)
    return max(8.0, min(28.0, target / max(widest, 1e-6)))


def make_stamp(
    width: float,
    height: float,
    lines: Sequence[str],
    opacity: float = 0.15,
    *,
    color: tuple[float, float, float] = DEFAULT_COLOR,
    angle: float = ANGLE,
) -> pymupdf.Document:
    """A one-page, transparent PDF carrying just the watermark.

    Pages are stamped with it via show_pdf_page, which reuses one Form
    XObject for every page of the same size: laying out ~30k glyphs per page
    instead would cost ~50 ms a page in PyMuPDF's Python text path.
    """
    lines = [ln for ln in lines if ln.strip()]
    if not 0.0 < opacity <= 1.0:
        raise ValueError("opacity must be in (0, 1]")
    stamp = pymupdf.open()
    page = stamp.new_page(width=width, height=height)
    if not lines:
        return stamp
    font = fonts.get_font()
    page.insert_font(fontname=FONT_NAME, fontbuffer=font.buffer)
    size = _font_size(page.rect, max(font.text_length(ln, 1.0) for ln in lines))
    gap = " " * 6
    diag = math.hypot(width, height)
    centre = pymupdf.Point(width / 2, height / 2)
    morph = (centre, pymupdf.Matrix(angle))
    shape = page.new_shape()
    # One long repeated string per row; rows cycle through the lines and are
    # staggered, on a grid wide enough to cover the page once rotated.
    # MuPDF clips whatever lands off-page.
    step_y = size * 3.2
    rows = int(diag / step_y / 2) + 2
    widths = [font.text_length(ln + gap, size) for ln in lines]
    for row in range(-rows, rows + 1):
        idx = row % len(lines)
        copies = int(2 * diag / widths[idx]) + 2
        x = centre.x - diag - (row % 3) * widths[idx] / 3
        shape.insert_text(
            (x, centre.y + row * step_y), gap.join([lines[idx]] * copies), fontname=FONT_NAME,
            fontsize=size, color=color, fill_opacity=opacity, stroke_opacity=opacity, morph=morph,
        )  # fmt: skip
    shape.commit(overlay=True)
    return stamp


def _frame(page: pymupdf.Page) -> tuple[pymupdf.Rect, int]:
    """The page box in unrotated coordinates, and the page rotation.

    show_pdf_page works in the unrotated frame, so the stamp is built there
    with the rotation added to its angle: the text then reads upright at
    ``ANGLE`` on screen whatever /Rotate says.
    """
    return page.rect * page.derotation_matrix, page.rotation


def _stamp_for(page: pymupdf.Page, lines: Sequence[str], opacity: float) -> pymupdf.Document:
    box, rotation = _frame(page)
    return make_stamp(box.width, box.height, lines, opacity, angle=ANGLE + rotation)


def apply_watermark(
    page: pymupdf.Page,
    lines: Sequence[str],
    opacity: float = 0.15,
    *,
    stamp: pymupdf.Document | None = None,
) -> None:
    """Repeat ``lines`` in diagonal rows across ``page`` (content layer, on top).

    ``stamp`` lets :func:`watermark_document` share one XObject across pages
    of the same size and rotation.
    """
    if stamp is None:
        stamp = _stamp_for(page, lines, opacity)
    page.show_pdf_page(_frame(page)[0], stamp, 0, overlay=True)


def watermark_document(doc: pymupdf.Document, lines: Sequence[str], opacity: float = 0.15) -> None:
    """Watermark every page of an open document in place."""
    stamps: dict[tuple[int, int, int], pymupdf.Document] = {}
    for number in range(doc.page_count):
        page = doc[number]
        box, rotation = _frame(page)
        key = (round(box.width), round(box.height), rotation)
        if key not in stamps:
            stamps[key] = _stamp_for(page, lines, opacity)
        apply_watermark(page, lines, opacity, stamp=stamps[key])


def watermark_pdf(pdf_bytes: bytes, lines: Sequence[str], opacity: float = 0.15) -> bytes:
    """Watermark every page; returns a new PDF with the font subset embedded."""
    with pymupdf.open("pdf", pdf_bytes) as doc:
        if doc.needs_pass:
            raise ValueError("cannot watermark an encrypted PDF")
        watermark_document(doc, lines, opacity)
        doc.subset_fonts()
        return doc.tobytes(garbage=3, deflate=True)


BURN_DPI = 150  # ~1240 x 1754 px for A4: the watermark and small print both stay legible
BURN_QUALITY = 80


def burned_copy(doc: pymupdf.Document, lines: Sequence[str], opacity: float = 0.15,
                *, dpi: int = BURN_DPI) -> pymupdf.Document:
    """A new document whose every page is one image of ``doc``'s page with the watermark
    burned into its pixels, and the watermark again as text on top (it reads, it can be
    found by a text search).

    A watermark that is its own object (an appended content stream, a Form XObject) goes
    with one edit; one burned into the only picture of the page cannot be taken off without
    repainting the page. The document's own text layer is not carried over (a confidential
    document is view-only: its text is not to be copied out of an export). Page annotations
    are not rendered: callers add theirs to the copy (or bake them first). The outline is kept.
    """
    watermark_document(doc, lines, opacity)
    out = pymupdf.open()
    for number in range(doc.page_count):
        page = doc[number]
        pix = page.get_pixmap(dpi=dpi, annots=False)
        target = out.new_page(width=page.rect.width, height=page.rect.height)
        target.insert_image(target.rect, stream=pix.tobytes("jpeg", jpg_quality=BURN_QUALITY))
    toc = doc.get_toc(simple=True)
    if toc:
        try:
            out.set_toc(toc)
        except ValueError:
            pass  # an outline MuPDF read but cannot write back: the pages matter, not it
    return out
