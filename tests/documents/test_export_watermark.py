"""A confidential export proves whom it was for (issue 17): strip every watermark object and
stream that can be found — annotations, Form XObjects, text, every content stream but the one
painting the page's picture — and the viewer's name is still on every page, in the pixels."""

from __future__ import annotations

import re

import pymupdf
import pytest

from documents.export import export_annotated_pdf
from documents.watermark import make_stamp
from tests.documents.test_export import WM, sample, source_pdf

PAGES = 3


def _source() -> bytes:
    doc = pymupdf.open("pdf", source_pdf((0,) * PAGES))
    for page in doc:
        page.insert_text((72, 500), "Secret content of the page", fontsize=14)
    return doc.tobytes()


_TEXT = re.compile(rb"\bBT\b.*?\bET\b", re.S)
_DO = re.compile(rb"/([^\s/\[\]<>()]+)\s+Do\b")


def strip_watermarks(pdf: bytes) -> pymupdf.Document:
    """Everything a person editing the PDF could delete as "the watermark"."""
    doc = pymupdf.open("pdf", pdf)
    for page in doc:
        for annot in list(page.annots()):
            page.delete_annot(annot)
        forms = {name for _, name, *_ in page.get_xobjects()}  # Form XObjects by name
        images = {img[7] for img in page.get_images(full=True)}
        keep = []
        for xref in page.get_contents():
            stream = doc.xref_stream(xref) or b""
            stream = _TEXT.sub(b"", stream)  # every text object (the watermark's words)
            stream = _DO.sub(lambda m, forms=forms: b"" if m.group(1).decode() in forms
                             else m.group(0), stream)
            doc.update_stream(xref, stream)
            if any(f"/{name}".encode() in stream for name in images):
                keep.append(xref)
        # Only the stream that paints the page's picture stays (appended stamps go).
        if keep:
            doc.xref_set_key(page.xref, "Contents",
                             "[" + " ".join(f"{x} 0 R" for x in keep) + "]")
    return pymupdf.open("pdf", doc.tobytes(garbage=3))


def _grey(page: pymupdf.Page) -> bytes:
    return page.get_pixmap(colorspace=pymupdf.csGRAY, dpi=72, annots=False).samples


def _name_signal(stripped: pymupdf.Page, original: pymupdf.Page) -> tuple[float, float]:
    """How much darker than the original the stripped page is where the name's letters would
    be (the stamp's own pixels) and elsewhere, over the original's white background."""
    stamp = make_stamp(original.rect.width, original.rect.height, [WM])[0]
    mask, before, after = _grey(stamp), _grey(original), _grey(stripped)
    assert len(mask) == len(before) == len(after)
    on, off = [], []
    for m, b, a in zip(mask, before, after, strict=True):
        if b < 250:
            continue  # the document's own ink
        (on if m < 245 else off).append(b - a)
    return sum(on) / len(on), sum(off) / len(off)


@pytest.mark.parametrize("flatten", [False, True])
def test_the_name_survives_stripping_every_watermark_object(flatten: bool) -> None:
    source = pymupdf.open("pdf", _source())
    out = export_annotated_pdf(_source(), sample(), flatten=flatten, watermark_lines=[WM])
    exported = pymupdf.open("pdf", out)
    assert exported.page_count == PAGES
    # The watermark is also text, so a search finds the name ...
    assert all(WM in page.get_text() for page in exported)
    # ... but the document's own text is not in a confidential export (view-only).
    assert not any("Secret content" in page.get_text() for page in exported)
    stripped = strip_watermarks(out)
    for number, page in enumerate(stripped):
        assert WM not in page.get_text() and not list(page.annots())
        on, off = _name_signal(page, source[number])
        # The name's letters are still printed on the page (darker by ~20 grey levels where
        # the stamp has ink), the rest of the paper is not.
        assert on > 8 and off < 3 and on > 4 * max(off, 0.5), (number, on, off)


def test_plain_export_keeps_its_text_and_no_watermark() -> None:
    out = pymupdf.open("pdf", export_annotated_pdf(_source(), sample()))
    assert all("Secret content" in page.get_text() for page in out)
    assert not out[0].get_images()
