"""Export a document with Hopso annotations as real PDF annotations.

* ink -> /Ink with colour, width; highlighter strokes -> /Ink with opacity
  and Multiply blending; highlighter rects -> /Highlight.
* notes -> /FreeText. MuPDF's own FreeText appearance only knows base-14
  fonts and patches missing Vietnamese letters glyph by glyph from a serif
  fallback, so we replace the appearance stream with one typeset in embedded
  Noto Sans (see :func:`_note_appearance`). /Contents keeps the plain text.
* optional flatten (``Document.bake``) and watermark. A watermarked (confidential) export
  is rasterised: each page becomes one image with the viewer's watermark burned into its
  pixels (watermark.burned_copy), the watermark is written again as text on top, and the
  annotations are added over the image (or baked into it with flatten). Deleting an object
  or editing a content stream cannot take the name off a page.

Annotation ids go into /NM and author ids into /T so a re-import or an
auditor can tell them apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pymupdf

from . import fonts
from .annotations import Annotation, HighlighterShape, InkShape, NoteShape, Point
from .watermark import burned_copy, watermark_document

NOTE_FILL = (1.0, 0.98, 0.80)  # pale "sticky note" yellow
NOTE_BORDER = (0.55, 0.55, 0.55)
NOTE_PADDING = 4.0
_NOTE_FONT = "hopso-notos"


def hex_to_rgb(color: str) -> tuple[float, float, float]:
    value = int(color[1:], 16)
    return ((value >> 16) / 255.0, ((value >> 8) & 0xFF) / 255.0, (value & 0xFF) / 255.0)


def export_annotated_pdf(
    pdf_bytes: bytes,
    annotations: Iterable[Annotation],
    *,
    flatten: bool = False,
    watermark_lines: Sequence[str] | None = None,
) -> bytes:
    """Return ``pdf_bytes`` with ``annotations`` added (and optionally baked in
    and watermarked). Raises ValueError for encrypted input or an annotation
    on a page the document does not have."""
    doc = pymupdf.open("pdf", pdf_bytes)
    try:
        if doc.needs_pass:
            raise ValueError("cannot export an encrypted PDF")
        ordered = sorted(annotations, key=lambda a: (a.page, a.created_at, a.id))
        for ann in ordered:
            if not 0 <= ann.page < doc.page_count:
                raise ValueError(
                    f"annotation {ann.id} is on page {ann.page}; the PDF has {doc.page_count}"
                )
        lines = [ln for ln in (watermark_lines or []) if ln.strip()]
        burn_first = bool(lines) and not flatten  # annotations go onto the burned pages
        if not burn_first:
            for ann in ordered:
                add_annotation(doc, ann)
        if flatten:
            doc.bake(annots=True, widgets=False)
            # Reload: after bake the in-memory pages still list the old
            # annotations for text extraction (PyMuPDF 1.28).
            doc = _reload(doc)
        if lines:
            burned = burned_copy(doc, lines)
            doc.close()
            doc = burned
            if burn_first:
                for ann in ordered:
                    add_annotation(doc, ann)
            watermark_document(doc, lines)  # the name as text too, on top
        doc.subset_fonts()
        return doc.tobytes(garbage=3, deflate=True)
    finally:
        doc.close()


def _reload(doc: pymupdf.Document) -> pymupdf.Document:
    data = doc.tobytes(garbage=1)
    doc.close()
    return pymupdf.open("pdf", data)


def add_annotation(doc: pymupdf.Document, ann: Annotation) -> list[pymupdf.Annot]:
    """Add one Hopso annotation to its page; returns the PDF annots created."""
    shape = ann.shape
    if isinstance(shape, InkShape):
        created = [_ink(doc[ann.page], shape.points, shape.color, shape.width, None)]
    elif isinstance(shape, HighlighterShape):
        created = _highlighter(doc[ann.page], shape)
    else:
        created = [_note(doc, ann.page, shape)]
    for annot in created:
        # /T (author) and /NM (our id) for traceability; set via xref so
        # MuPDF does not regenerate our custom note appearance.
        doc.xref_set_key(annot.xref, "T", pymupdf.get_pdf_str(ann.author_id))
        doc.xref_set_key(annot.xref, "NM", pymupdf.get_pdf_str(ann.id))
    return created


def _to_pdf_space(page: pymupdf.Page, pts: Sequence[Point]) -> list[tuple[float, float]]:
    """Visual (page.rect) coordinates -> the unrotated frame annotation APIs take."""
    m = page.derotation_matrix
    # Plain arithmetic: pymupdf.Point * Matrix costs ~30 µs a point, which
    # adds up to seconds for a page of long strokes.
    a, b, c, d, e, f = m.a, m.b, m.c, m.d, m.e, m.f
    out = [(a * p.x + c * p.y + e, b * p.x + d * p.y + f) for p in pts]
    if len(out) == 1:  # a tap: PDF ink needs a segment to draw a dot
        x, y = out[0]
        out.append((x + 0.01, y))
    return out


def _ink(
    page: pymupdf.Page, points: Sequence[Point], color: str, width: float, opacity: float | None
) -> pymupdf.Annot:
    annot = page.add_ink_annot([_to_pdf_space(page, points)])
    annot.set_border(width=width)
    annot.set_colors(stroke=hex_to_rgb(color))
    if opacity is not None:
        annot.set_opacity(opacity)
    # Multiply keeps the text under a highlighter stroke readable.
    annot.update(blend_mode="Multiply" if opacity is not None else None)
    return annot


def _highlighter(page: pymupdf.Page, shape: HighlighterShape) -> list[pymupdf.Annot]:
    created = []
    if shape.points:
        created.append(_ink(page, shape.points, shape.color, shape.width, shape.opacity))
    if shape.rects:
        m = page.derotation_matrix
        # Transform the quad, not the rect: quad corner order carries the text
        # direction, which MuPDF needs to draw the highlight right on rotated pages.
        quads = [pymupdf.Rect(r.x0, r.y0, r.x1, r.y1).quad * m for r in shape.rects]
        annot = page.add_highlight_annot(quads=quads)
        annot.set_colors(stroke=hex_to_rgb(shape.color))
        annot.set_opacity(shape.opacity)
        annot.update()
        created.append(annot)
    return created


def _typeset(
    doc: pymupdf.Document, width: float, height: float, shape: NoteShape, draw: bool
) -> tuple[float, bytes, str]:
    """Set the note text in embedded Noto Sans on a scratch page of ``doc``.

    Returns (height needed, content stream, resources). insert_textbox
    writes nothing unless the box is as tall as *it* computes, yet its
    estimate under-counts line spacing for long text with this font
    (PyMuPDF 1.28), so the need is the larger of its estimate and the
    measured bottom of the laid-out text. The scratch page is
    deleted again, but the font object it created stays in ``doc`` for the
    appearance stream to reference. Adding/deleting pages invalidates Page
    objects, so callers re-fetch pages afterwards.
    """
    scratch = doc.new_page(-1, width=width, height=height)
    try:
        if draw:
            scratch.draw_rect(scratch.rect, color=NOTE_BORDER, fill=NOTE_FILL, width=0.75)
        scratch.insert_font(fontname=_NOTE_FONT, fontbuffer=fonts.sans_family().regular)
        inner = scratch.rect + (NOTE_PADDING, NOTE_PADDING, -NOTE_PADDING, -NOTE_PADDING)
        spare = scratch.insert_textbox(
            inner,
            shape.text,
            fontname=_NOTE_FONT,
            fontsize=shape.font_size,
            color=hex_to_rgb(shape.color),
        )
        bottom = max((block[3] for block in scratch.get_text("blocks")), default=0.0) + NOTE_PADDING
        need = max(height - spare, bottom) + 1.0
        content = b"\n".join(doc.xref_stream(x) for x in scratch.get_contents()) if draw else b""
        resources = doc.xref_get_key(scratch.xref, "Resources")[1] if draw else ""
    finally:
        doc.delete_page(scratch.number)
    return need, content, resources


def _note_rect(doc: pymupdf.Document, bounds: pymupdf.Rect, shape: NoteShape) -> pymupdf.Rect:
    """Visual rect of a note: given width, height grown to fit, kept on-page."""
    width = min(shape.box_width, bounds.width)
    probe_h = max(bounds.height, 200.0) * 4
    need, _, _ = _typeset(doc, width, probe_h, shape, draw=False)
    height = min(need, bounds.height)
    x0 = min(max(shape.x, bounds.x0), bounds.x1 - width)
    y0 = min(max(shape.y, bounds.y0), bounds.y1 - height)
    return pymupdf.Rect(x0, y0, x0 + width, y0 + height)


def _note(doc: pymupdf.Document, pno: int, shape: NoteShape) -> pymupdf.Annot:
    rect = _note_rect(doc, doc[pno].rect, shape)
    _, content, resources = _typeset(doc, rect.width, rect.height, shape, draw=True)
    page = doc[pno]
    annot = page.add_freetext_annot(
        rect * page.derotation_matrix,
        shape.text,
        fontsize=shape.font_size,
        fontname="helv",
        text_color=hex_to_rgb(shape.color),
        fill_color=NOTE_FILL,
        rotate=page.rotation,
    )
    _set_appearance(doc, annot, rect, content, resources, page.rotation)
    return annot


def _set_appearance(
    doc: pymupdf.Document,
    annot: pymupdf.Annot,
    rect: pymupdf.Rect,
    content: bytes,
    resources: str,
    rotation: int,
) -> None:
    """Replace MuPDF's FreeText /AP /N stream with our Noto Sans typesetting.

    MuPDF's own appearance would use Helvetica and patch the Vietnamese-only
    letters from a serif fallback. /Contents keeps the plain text, so viewers
    that regenerate appearances still show the words (in their own font).
    """
    kind, value = doc.xref_get_key(annot.xref, "AP/N")
    if kind != "xref":
        return  # MuPDF made no appearance; keep its default behaviour
    ap_xref = int(value.split()[0])
    doc.update_stream(ap_xref, content)
    doc.xref_set_key(ap_xref, "Resources", resources)
    doc.xref_set_key(ap_xref, "BBox", f"[0 0 {rect.width:g} {rect.height:g}]")
    # The form is upright in the visual frame; /Matrix turns it into the
    # unrotated page frame (the viewer maps the transformed BBox onto /Rect).
    m = pymupdf.Matrix(rotation) if rotation else pymupdf.Matrix(1, 1)
    doc.xref_set_key(ap_xref, "Matrix", f"[{m.a:g} {m.b:g} {m.c:g} {m.d:g} {m.e:g} {m.f:g}]")
